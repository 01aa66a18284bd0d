import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { QllamaError } from '../errors.js';

/**
 * safetensors reader: an 8-byte little-endian header length, a JSON header
 * `{name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?: {...}}`, then the data.
 * Only the header is read on open; each tensor is read from disk on demand (positional reads),
 * so a 7 GB checkpoint never sits whole in memory. Every size and offset is checked against
 * the file size first, like llama.cpp's loader: a bad file fails at open with a named error.
 */
export type SafetensorsDType = 'F16' | 'BF16' | 'F32' | 'F64' | 'I8' | 'U8' | 'I16' | 'I32' | 'I64' | 'BOOL';

export const DTYPE_BYTES: Readonly<Record<SafetensorsDType, number>> = {
  F16: 2, BF16: 2, F32: 4, F64: 8, I8: 1, U8: 1, I16: 2, I32: 4, I64: 8, BOOL: 1,
};

export interface TensorEntry {
  readonly name: string;
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  /** absolute byte offset in the file */
  readonly offset: number;
  readonly byteLength: number;
  readonly file: string;
}

/** The file is not a valid safetensors file (truncated, corrupt header, bad offsets). */
export class SafetensorsFormatError extends QllamaError {}
/** A tensor the caller needs is not in the file. */
export class MissingTensorError extends QllamaError {}

const MAX_HEADER_BYTES = 100 * 1024 * 1024; // the format's own limit

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

  static open(path: string): SafetensorsFile {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (err) {
      throw new SafetensorsFormatError(`cannot open "${path}": ${(err as NodeJS.ErrnoException).code ?? String(err)}; check the path`);
    }
    try {
      const { entries, metadata } = readHeader(fd, path);
      return new SafetensorsFile(path, fd, entries, metadata);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

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

  /** The raw little-endian bytes of one tensor. */
  read(name: string): Buffer {
    const e = this.entry(name);
    if (this.fd === null) throw new SafetensorsFormatError(`${this.path} was closed`);
    const buf = Buffer.allocUnsafe(e.byteLength);
    let done = 0;
    while (done < e.byteLength) {
      const n = readSync(this.fd, buf, done, e.byteLength - done, e.offset + done);
      if (n === 0) throw new SafetensorsFormatError(`${this.path} ended while reading "${name}": the file is truncated; download it again`);
      done += n;
    }
    return buf;
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}

function readHeader(fd: number, path: string): { entries: Map<string, TensorEntry>; metadata: Record<string, string> } {
  const size = fstatSync(fd).size;
  const bad = (what: string): SafetensorsFormatError =>
    new SafetensorsFormatError(`${path} is not a valid safetensors file: ${what}. The model is corrupted or incomplete; download it again`);
  if (size < 8) throw bad(`it is ${size} bytes long, shorter than the 8-byte header length`);
  const lenBuf = Buffer.alloc(8);
  readSync(fd, lenBuf, 0, 8, 0);
  const headerLen = Number(lenBuf.readBigUInt64LE(0));
  if (headerLen > MAX_HEADER_BYTES) throw bad(`the header claims ${headerLen} bytes (limit ${MAX_HEADER_BYTES})`);
  if (8 + headerLen > size) throw bad(`the header claims ${headerLen} bytes but the file has only ${size - 8} after the length`);
  const headerBuf = Buffer.alloc(headerLen);
  readSync(fd, headerBuf, 0, headerLen, 8);
  let header: unknown;
  try {
    header = JSON.parse(headerBuf.toString('utf8'));
  } catch {
    throw bad('its header is not valid JSON');
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw bad('its header is not a JSON object');
  const dataStart = 8 + headerLen;
  const dataSize = size - dataStart;
  const entries = new Map<string, TensorEntry>();
  let metadata: Record<string, string> = {};
  const spans: [number, number, string][] = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      metadata = parseMetadata(raw, bad);
      continue;
    }
    const info = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof info !== 'object' || info === null) throw bad(`entry "${name}" is not an object`);
    const dtype = info.dtype;
    if (typeof dtype !== 'string' || !(dtype in DTYPE_BYTES)) {
      throw bad(`tensor "${name}" has unknown dtype ${JSON.stringify(dtype)} (supported: ${Object.keys(DTYPE_BYTES).join(', ')})`);
    }
    const shape = info.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw bad(`tensor "${name}" has an invalid shape`);
    const offsets = info.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      throw bad(`tensor "${name}" has invalid data_offsets`);
    }
    const [begin, end] = offsets as [number, number];
    const count = (shape as number[]).reduce((a, b) => a * b, 1);
    const expected = count * DTYPE_BYTES[dtype as SafetensorsDType];
    if (end < begin || end - begin !== expected) {
      throw bad(`tensor "${name}" spans ${end - begin} bytes but shape [${shape.join(', ')}] × ${dtype} needs ${expected}`);
    }
    if (end > dataSize) throw bad(`tensor "${name}" ends at byte ${end} of the data but the file holds only ${dataSize} data bytes (truncated?)`);
    spans.push([begin, end, name]);
    entries.set(name, { name, dtype: dtype as SafetensorsDType, shape: shape as number[], offset: dataStart + begin, byteLength: expected, file: path });
  }
  spans.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < spans.length; i++) {
    if (spans[i][0] < spans[i - 1][1]) throw bad(`tensors "${spans[i - 1][2]}" and "${spans[i][2]}" overlap`);
  }
  return { entries, metadata };
}

function parseMetadata(raw: unknown, bad: (what: string) => SafetensorsFormatError): Record<string, string> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad('__metadata__ is not an object');
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw)) {
    if (typeof v !== 'string') throw bad(`__metadata__.${k} is not a string`);
    out[k] = v;
  }
  return out;
}

// --- typed views and conversions ------------------------------------------------------------

/** Views need the byte offset aligned to the element size; copy when it is not. */
function aligned(buf: Buffer, bytes: number): ArrayBuffer | Buffer {
  return buf.byteOffset % bytes === 0 ? buf : Buffer.from(buf);
}

export function asUint16(buf: Buffer): Uint16Array {
  const b = aligned(buf, 2) as Buffer;
  return new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2);
}

export function asInt32(buf: Buffer): Int32Array {
  const b = aligned(buf, 4) as Buffer;
  return new Int32Array(b.buffer, b.byteOffset, b.byteLength / 4);
}

export function asFloat32(buf: Buffer): Float32Array {
  const b = aligned(buf, 4) as Buffer;
  return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** f32 → IEEE half bits, round to nearest even (as numpy/torch `.half()`). */
export function floatToHalf(value: number): number {
  f32[0] = value;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    return sign | (rem > mid || (rem === mid && (half & 1)) ? half + 1 : half);
  }
  const half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  return sign | (rem > 0x1000 || (rem === 0x1000 && (half & 1)) ? half + 1 : half);
}

/** Any numeric dtype to f32 (fp16/bf16 exactly; integers and f64 by value). */
export function toFloat32(dtype: SafetensorsDType, buf: Buffer): Float32Array {
  switch (dtype) {
    case 'F32': return asFloat32(buf).slice();
    case 'F16': {
      const h = asUint16(buf);
      const out = new Float32Array(h.length);
      for (let i = 0; i < h.length; i++) out[i] = halfToFloat(h[i]);
      return out;
    }
    case 'BF16': {
      const h = asUint16(buf);
      const out = new Float32Array(h.length);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < h.length; i++) bits[i] = h[i] << 16;
      return out;
    }
    case 'F64': return Float32Array.from(new Float64Array(Buffer.from(buf).buffer, 0, buf.byteLength / 8));
    case 'I8': return Float32Array.from(new Int8Array(buf.buffer, buf.byteOffset, buf.byteLength));
    case 'U8': case 'BOOL': return Float32Array.from(buf);
    case 'I16': return Float32Array.from(new Int16Array(Buffer.from(buf).buffer, 0, buf.byteLength / 2));
    case 'I32': return Float32Array.from(asInt32(buf));
    case 'I64': return Float32Array.from(new BigInt64Array(Buffer.from(buf).buffer, 0, buf.byteLength / 8), (v) => Number(v));
  }
}
