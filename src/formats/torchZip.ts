import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { crc32, inflateRawSync } from 'node:zlib';
import { ModelLoadError } from '../errors.js';

/** The file ends before the zip's own directory says it should: an incomplete download. */
export class TruncatedZipError extends ModelLoadError {}

/** The zip structure is inconsistent (bad signature, offsets outside the file, unknown method). */
export class ZipFormatError extends ModelLoadError {}

export interface ZipEntry {
  readonly name: string;
  /** 0 stored, 8 deflated */
  readonly method: number;
  readonly compressedSize: number;
  readonly size: number;
  readonly crc32: number;
  readonly localHeaderOffset: number;
}

const EOCD_SIG = 0x06054b50;
const ZIP64_LOCATOR_SIG = 0x07064b50;
const ZIP64_EOCD_SIG = 0x06064b50;
const CENTRAL_SIG = 0x02014b50;
const LOCAL_SIG = 0x04034b50;
// The directory of a torch checkpoint is a few KB per thousand tensors; more is not a checkpoint.
const MAX_DIRECTORY_BYTES = 256 << 20;
// Deflated entries are inflated in memory, so only small ones (the pickle) are accepted.
const MAX_INFLATED_BYTES = 1 << 30;

/**
 * Read-only zip access for PyTorch checkpoints (torch.save writes a zip of stored entries,
 * zip64 once a shard passes 4 GB). Reads only the central directory at open; entry bytes are
 * read on demand with positioned reads, so a 10 GB shard costs no memory until a tensor is asked for.
 * Every offset and size is checked against the file length before it is used.
 */
export class ZipReader {
  readonly entries: ReadonlyMap<string, ZipEntry>;
  private readonly dataOffsets = new Map<string, number>();

  private constructor(private fd: number | undefined, readonly path: string, readonly fileSize: number, entries: Map<string, ZipEntry>) {
    this.entries = entries;
  }

  static open(path: string): ZipReader {
    const fd = openSync(path, 'r');
    try {
      const size = fstatSync(fd).size;
      return new ZipReader(fd, path, size, readDirectory(fd, size, path));
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  /** `length` bytes of an entry's content from `start`. */
  read(entry: ZipEntry, start = 0, length = entry.size - start): Buffer {
    if (start < 0 || length < 0 || start + length > entry.size) {
      throw new ZipFormatError(`${this.path}: read of ${length} bytes at ${start} is outside entry ${entry.name} (${entry.size} bytes)`);
    }
    const dataStart = this.dataOffset(entry);
    if (entry.method === 0) return this.readAt(dataStart + start, length, entry.name);
    const raw = this.readAt(dataStart, entry.compressedSize, entry.name);
    let inflated: Buffer;
    try {
      inflated = inflateRawSync(raw, { maxOutputLength: entry.size });
    } catch (err) {
      throw new ZipFormatError(`${this.path}: entry ${entry.name} does not inflate (${(err as Error).message}); the file is corrupt, download it again`, { cause: err });
    }
    if (inflated.length !== entry.size) throw new ZipFormatError(`${this.path}: entry ${entry.name} inflates to ${inflated.length} bytes, the directory says ${entry.size}`);
    return inflated.subarray(start, start + length);
  }

  /** Whole entry, with its CRC checked (meant for small entries such as the pickle). */
  readChecked(entry: ZipEntry): Buffer {
    const bytes = this.read(entry);
    if (crc32(bytes) >>> 0 !== entry.crc32 >>> 0) {
      throw new ZipFormatError(`${this.path}: entry ${entry.name} fails its CRC check; the file is corrupt, download it again`);
    }
    return bytes;
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  /** Where an entry's bytes start: after its local header, whose lengths can differ from the central one. */
  private dataOffset(entry: ZipEntry): number {
    const known = this.dataOffsets.get(entry.name);
    if (known !== undefined) return known;
    const header = this.readAt(entry.localHeaderOffset, 30, entry.name);
    if (header.readUInt32LE(0) !== LOCAL_SIG) throw new ZipFormatError(`${this.path}: entry ${entry.name} has no local header at offset ${entry.localHeaderOffset}; the file is corrupt`);
    const start = entry.localHeaderOffset + 30 + header.readUInt16LE(26) + header.readUInt16LE(28);
    if (entry.method !== 0 && entry.method !== 8) throw new ZipFormatError(`${this.path}: entry ${entry.name} uses compression method ${entry.method}; only stored and deflated entries are supported`);
    if (start + entry.compressedSize > this.fileSize) {
      throw new TruncatedZipError(`${this.path}: entry ${entry.name} ends at byte ${start + entry.compressedSize} but the file has ${this.fileSize}; the file is truncated, download it again`);
    }
    if (entry.method === 0 && entry.compressedSize !== entry.size) throw new ZipFormatError(`${this.path}: stored entry ${entry.name} has different packed and real sizes`);
    this.dataOffsets.set(entry.name, start);
    return start;
  }

  private readAt(position: number, length: number, what: string): Buffer {
    if (this.fd === undefined) throw new ZipFormatError(`${this.path} is closed`);
    if (position + length > this.fileSize) {
      throw new TruncatedZipError(`${this.path}: ${what} needs bytes up to ${position + length} but the file has ${this.fileSize}; the file is truncated, download it again`);
    }
    return readExact(this.fd, position, length);
  }
}

function readExact(fd: number, position: number, length: number): Buffer {
  const buf = Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, buf, done, length - done, position + done);
    if (n === 0) throw new TruncatedZipError(`unexpected end of file at byte ${position + done}`);
    done += n;
  }
  return buf;
}

function readDirectory(fd: number, fileSize: number, path: string): Map<string, ZipEntry> {
  // The end record is 22 bytes plus a comment of at most 65535: search that tail backwards.
  const tailLength = Math.min(fileSize, 22 + 0xffff);
  const tail = readExact(fd, fileSize - tailLength, tailLength);
  let eocd = -1;
  for (let i = tailLength - 22; i >= 0; i--) {
    if (tail.readUInt32LE(i) === EOCD_SIG && i + 22 + tail.readUInt16LE(i + 20) === tailLength) { eocd = i; break; }
  }
  if (eocd < 0) {
    throw new TruncatedZipError(`${path}: no zip end record; the file is truncated (an interrupted download?) or not a PyTorch zip checkpoint. Download it again`);
  }
  let count = tail.readUInt16LE(eocd + 10);
  let dirSize = tail.readUInt32LE(eocd + 12);
  let dirOffset = tail.readUInt32LE(eocd + 16);
  const eocdPos = fileSize - tailLength + eocd;
  if (eocdPos >= 20 && (count === 0xffff || dirSize === 0xffffffff || dirOffset === 0xffffffff)) {
    const locator = readExact(fd, eocdPos - 20, 20);
    if (locator.readUInt32LE(0) === ZIP64_LOCATOR_SIG) {
      const recPos = safeNumber(locator.readBigUInt64LE(8), path);
      if (recPos + 56 > fileSize) throw new TruncatedZipError(`${path}: zip64 end record outside the file; the file is truncated`);
      const rec = readExact(fd, recPos, 56);
      if (rec.readUInt32LE(0) !== ZIP64_EOCD_SIG) throw new ZipFormatError(`${path}: bad zip64 end record`);
      count = safeNumber(rec.readBigUInt64LE(32), path);
      dirSize = safeNumber(rec.readBigUInt64LE(40), path);
      dirOffset = safeNumber(rec.readBigUInt64LE(48), path);
    }
  }
  if (dirOffset + dirSize > eocdPos || dirSize > MAX_DIRECTORY_BYTES) {
    throw new TruncatedZipError(`${path}: the zip directory (${dirSize} bytes at ${dirOffset}) lies outside the file (${fileSize} bytes); the file is truncated or corrupt, download it again`);
  }
  return parseDirectory(readExact(fd, dirOffset, dirSize), count, path);
}

function parseDirectory(dir: Buffer, count: number, path: string): Map<string, ZipEntry> {
  const entries = new Map<string, ZipEntry>();
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > dir.length || dir.readUInt32LE(p) !== CENTRAL_SIG) throw new ZipFormatError(`${path}: zip directory entry ${i} is malformed`);
    const nameLen = dir.readUInt16LE(p + 28);
    const extraLen = dir.readUInt16LE(p + 30);
    const commentLen = dir.readUInt16LE(p + 32);
    const end = p + 46 + nameLen + extraLen + commentLen;
    if (end > dir.length) throw new ZipFormatError(`${path}: zip directory entry ${i} runs past the directory`);
    const name = dir.toString('utf8', p + 46, p + 46 + nameLen);
    let size = dir.readUInt32LE(p + 24);
    let compressedSize = dir.readUInt32LE(p + 20);
    let localHeaderOffset = dir.readUInt32LE(p + 42);
    // zip64: the 0xffffffff fields move, in this order, into the extra field with id 1.
    let e = p + 46 + nameLen;
    const extraEnd = e + extraLen;
    while (e + 4 <= extraEnd) {
      const id = dir.readUInt16LE(e);
      const len = dir.readUInt16LE(e + 2);
      if (e + 4 + len > extraEnd) throw new ZipFormatError(`${path}: zip extra field of ${name} runs past its entry`);
      if (id === 1) {
        let q = e + 4;
        const next = (): number => {
          if (q + 8 > e + 4 + len) throw new ZipFormatError(`${path}: zip64 field of ${name} is too short`);
          const v = safeNumber(dir.readBigUInt64LE(q), path);
          q += 8;
          return v;
        };
        if (size === 0xffffffff) size = next();
        if (compressedSize === 0xffffffff) compressedSize = next();
        if (localHeaderOffset === 0xffffffff) localHeaderOffset = next();
      }
      e += 4 + len;
    }
    const method = dir.readUInt16LE(p + 10);
    if (method === 8 && size > MAX_INFLATED_BYTES) throw new ZipFormatError(`${path}: deflated entry ${name} is ${size} bytes; only small deflated entries are supported`);
    entries.set(name, { name, method, size, compressedSize, crc32: dir.readUInt32LE(p + 16), localHeaderOffset });
    p = end;
  }
  return entries;
}

function safeNumber(v: bigint, path: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ZipFormatError(`${path}: zip64 value ${v} is out of range; the file is corrupt`);
  return Number(v);
}
