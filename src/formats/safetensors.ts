import { closeSync, fstatSync, openSync, read as readCb, readSync } from 'node:fs';
import { ModelLoadError } from '../errors.js';

/**
 * safetensors reader. Layout: an 8-byte little-endian header length N, N bytes of JSON
 * `{name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?: {string: string}}`, then
 * the data; offsets are relative to the end of the header.
 * Only the header is read on open; each tensor is read from disk on demand with a positional
 * read, so a 7 GB checkpoint never sits whole in memory. `readAsync` splits a tensor into chunks
 * read concurrently on libuv's thread pool (page-cached reads are memory copies, so several in
 * flight use several cores) and can read into a caller's buffer, so a loader can recycle them. Every size and offset is checked
 * against the file size at open, like llama.cpp's loader: a bad file fails early with a
 * named error instead of producing garbage logits later.
 */
export type SafetensorsDType = 'F16' | 'BF16' | 'F32' | 'F64' | 'I8' | 'U8' | 'I16' | 'I32' | 'I64' | 'BOOL';

export const DTYPE_BYTES: Readonly<Record<SafetensorsDType, number>> = {
  F16: 2, BF16: 2, F32: 4, F64: 8, I8: 1, U8: 1, I16: 2, I32: 4, I64: 8, BOOL: 1,
};

export function isSafetensorsDType(s: unknown): s is SafetensorsDType {
  return typeof s === 'string' && Object.hasOwn(DTYPE_BYTES, s);
}

export interface TensorEntry {
  readonly name: string;
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  /** absolute byte offset in the file */
  readonly offset: number;
  readonly byteLength: number;
  readonly file: string;
}

// One class per failure (house style); all are SafetensorsFormatError, hence ModelLoadError.
/** The file is not a valid safetensors file; the subclasses say how. */
export class SafetensorsFormatError extends ModelLoadError {}
/** The file cannot be opened (missing, unreadable). */
export class SafetensorsOpenError extends ModelLoadError {}
/** The file ends before its header or a tensor does. */
export class TruncatedSafetensorsError extends SafetensorsFormatError {}
/** The JSON header is malformed (not JSON, not an object, bad entry or __metadata__). */
export class SafetensorsHeaderError extends SafetensorsFormatError {}
/** A tensor has a dtype this reader does not know. */
export class UnknownDTypeError extends SafetensorsFormatError {}
/** shape × dtype size differs from the tensor's data_offsets span. */
export class TensorSizeMismatchError extends SafetensorsFormatError {}
/** Two tensors' byte ranges overlap. */
export class TensorOverlapError extends SafetensorsFormatError {}
/** A tensor the caller needs is not in the file. */
export class MissingTensorError extends ModelLoadError {}
/** read() after close(): a lifecycle bug in the caller. */
export class SafetensorsClosedError extends ModelLoadError {}

/** The format's own limit (safetensors rejects headers over 100 MB). */
const MAX_HEADER_BYTES = 100_000_000;
/** Bytes per positional read in readAsync: small enough to spread one big tensor over the pool's threads. */
const READ_CHUNK = 8 << 20;
const REDOWNLOAD = 'the model is corrupted or incomplete; download it again';

export class SafetensorsFile {
  private fd: number | null;

  private constructor(
    readonly path: string,
    fd: number,
    private readonly entries: ReadonlyMap<string, TensorEntry>,
    readonly metadata: Readonly<Record<string, string>>,
  ) {
    this.fd = fd;
  }

  /** Opens and validates the header; the data stays on disk. */
  static open(path: string): SafetensorsFile {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? String(err);
      throw new SafetensorsOpenError(`cannot open weights file "${path}" (${code}): check the path and permissions`);
    }
    try {
      const { entries, metadata } = readHeader(fd, path);
      return new SafetensorsFile(path, fd, entries, metadata);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  /** Tensor names in header order. */
  names(): string[] {
    return [...this.entries.keys()];
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  entry(name: string): TensorEntry {
    const e = this.entries.get(name);
    if (!e) throw new MissingTensorError(`tensor "${name}" is not in ${this.path}: the file is incomplete or belongs to another model`);
    return e;
  }

  /** The raw little-endian bytes of one tensor, read from disk now (own, 8-aligned memory). */
  read(name: string): Buffer {
    const e = this.entry(name);
    if (this.fd === null) throw new SafetensorsClosedError(`${this.path} was closed before reading "${name}"`);
    // allocUnsafeSlow: not from the shared pool, so offset 0 and typed views need no copy
    const buf = Buffer.allocUnsafeSlow(e.byteLength);
    let done = 0;
    while (done < e.byteLength) {
      const n = readSync(this.fd, buf, done, e.byteLength - done, e.offset + done);
      if (n === 0) throw new TruncatedSafetensorsError(`${this.path} ended while reading "${name}" (it shrank after opening?): ${REDOWNLOAD}`);
      done += n;
    }
    return buf;
  }

  /**
   * Like read(), but through the thread pool in chunks of READ_CHUNK bytes, all in flight at once,
   * into `into` when given (exactly the tensor's byteLength; a fresh 8-aligned buffer otherwise).
   * Do not close() while a read is pending.
   */
  async readAsync(name: string, into?: Uint8Array): Promise<Uint8Array> {
    const e = this.entry(name);
    const fd = this.fd;
    if (fd === null) throw new SafetensorsClosedError(`${this.path} was closed before reading "${name}"`);
    if (into && into.byteLength !== e.byteLength) throw new RangeError(`readAsync("${name}"): the buffer holds ${into.byteLength} bytes, the tensor ${e.byteLength}`);
    const buf = into ?? Buffer.allocUnsafeSlow(e.byteLength);
    const chunks: Promise<void>[] = [];
    for (let at = 0; at < e.byteLength; at += READ_CHUNK) {
      chunks.push(this.readRange(fd, buf, at, Math.min(READ_CHUNK, e.byteLength - at), e.offset + at, name));
    }
    await Promise.all(chunks);
    return buf;
  }

  private async readRange(fd: number, buf: Uint8Array, at: number, length: number, position: number, name: string): Promise<void> {
    let done = 0;
    while (done < length) {
      const n = await new Promise<number>((resolve, reject) => {
        readCb(fd, buf, at + done, length - done, position + done, (err, bytes) => (err ? reject(err) : resolve(bytes)));
      });
      if (n === 0) throw new TruncatedSafetensorsError(`${this.path} ended while reading "${name}" (it shrank after opening?): ${REDOWNLOAD}`);
      done += n;
    }
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

function readExactly(fd: number, length: number, position: number): Buffer {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, buf, done, length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return buf.subarray(0, done);
}

function readHeader(fd: number, path: string): { entries: Map<string, TensorEntry>; metadata: Record<string, string> } {
  const size = fstatSync(fd).size;
  const where = `${path} is not a valid safetensors file`;
  if (size < 8) throw new TruncatedSafetensorsError(`${where}: it is ${size} bytes long, shorter than the 8-byte header length; ${REDOWNLOAD}`);
  const headerLen = readExactly(fd, 8, 0).readBigUInt64LE(0);
  if (headerLen > BigInt(size - 8)) {
    throw new TruncatedSafetensorsError(`${where}: the header claims ${headerLen} bytes but only ${size - 8} follow the length; ${REDOWNLOAD}`);
  }
  if (headerLen > BigInt(MAX_HEADER_BYTES)) throw new SafetensorsHeaderError(`${where}: the header claims ${headerLen} bytes (limit ${MAX_HEADER_BYTES}); ${REDOWNLOAD}`);
  const n = Number(headerLen);
  let header: unknown;
  try {
    header = JSON.parse(readExactly(fd, n, 8).toString('utf8'));
  } catch (err) {
    throw new SafetensorsHeaderError(`${where}: its header is not valid JSON (${err instanceof Error ? err.message : String(err)}); ${REDOWNLOAD}`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw new SafetensorsHeaderError(`${where}: its header is not a JSON object; ${REDOWNLOAD}`);

  const dataStart = 8 + n;
  const dataSize = size - dataStart;
  const entries = new Map<string, TensorEntry>();
  let metadata: Record<string, string> = {};
  const spans: { begin: number; end: number; name: string }[] = [];
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = parseMetadata(raw, where);
      continue;
    }
    const e = parseEntry(name, raw, where, dataSize);
    spans.push({ begin: e.begin, end: e.end, name });
    entries.set(name, { name, dtype: e.dtype, shape: e.shape, offset: dataStart + e.begin, byteLength: e.end - e.begin, file: path });
  }
  spans.sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < spans.length; i++) {
    if (spans[i].begin < spans[i - 1].end) {
      throw new TensorOverlapError(`${where}: tensors "${spans[i - 1].name}" and "${spans[i].name}" share bytes ${spans[i].begin}..${spans[i - 1].end}; ${REDOWNLOAD}`);
    }
  }
  return { entries, metadata };
}

function parseEntry(name: string, raw: unknown, where: string, dataSize: number): { dtype: SafetensorsDType; shape: readonly number[]; begin: number; end: number } {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new SafetensorsHeaderError(`${where}: entry "${name}" is not an object; ${REDOWNLOAD}`);
  const info = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  const dtype = info.dtype;
  if (!isSafetensorsDType(dtype)) {
    throw new UnknownDTypeError(`${where}: tensor "${name}" has dtype ${JSON.stringify(dtype)}, which qllama does not read (supported: ${Object.keys(DTYPE_BYTES).join(', ')}); convert the checkpoint to one of these`);
  }
  const shape = info.shape;
  if (!Array.isArray(shape) || !shape.every((d): d is number => Number.isSafeInteger(d) && d >= 0)) {
    throw new SafetensorsHeaderError(`${where}: tensor "${name}" has shape ${JSON.stringify(shape)}, not a list of non-negative integers; ${REDOWNLOAD}`);
  }
  const offsets = info.data_offsets;
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
    throw new SafetensorsHeaderError(`${where}: tensor "${name}" has data_offsets ${JSON.stringify(offsets)}, not [begin, end]; ${REDOWNLOAD}`);
  }
  const [begin, end] = offsets as [number, number];
  const needed = shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[dtype];
  if (end < begin || end - begin !== needed) {
    throw new TensorSizeMismatchError(`${where}: tensor "${name}" spans ${end - begin} bytes [${begin}, ${end}) but shape [${shape.join(', ')}] × ${dtype} needs ${needed}; ${REDOWNLOAD}`);
  }
  if (end > dataSize) {
    throw new TruncatedSafetensorsError(`${where}: tensor "${name}" ends at data byte ${end} but the file holds only ${dataSize} data bytes (truncated download?); ${REDOWNLOAD}`);
  }
  return { dtype, shape: Object.freeze([...shape]), begin, end };
}

function parseMetadata(raw: unknown, where: string): Record<string, string> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new SafetensorsHeaderError(`${where}: __metadata__ is not an object; ${REDOWNLOAD}`);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw)) {
    if (typeof v !== 'string') throw new SafetensorsHeaderError(`${where}: __metadata__.${k} is ${JSON.stringify(v)}, not a string; ${REDOWNLOAD}`);
    out[k] = v;
  }
  return Object.freeze(out);
}

// Typed views and fp16 conversion live in their own files; re-exported so callers need one import.
export { asFloat32, asInt32, asUint16, toFloat32, TensorByteLengthError } from './tensorViews.js';
export { floatToHalf, halfToFloat } from './half.js';
