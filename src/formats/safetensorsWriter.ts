import { randomBytes } from 'node:crypto';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { QllamaError } from '../errors.js';
import { DTYPE_BYTES, isSafetensorsDType, type SafetensorsDType } from './safetensors.js';

/**
 * safetensors writer. Streams tensor by tensor (memory ≈ one tensor, whatever the model size):
 * the header is computed from the specs up front, then each tensor's bytes are asked of
 * `produce` in order and appended. The file is written under a temporary name in the target
 * folder and renamed only when complete and flushed, so a crash, a full disk or a throwing
 * producer never leaves a half file under the real name (and the temp file is removed).
 */

export interface TensorSpec {
  readonly name: string;
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
}

export type TensorProducer = (name: string) => Promise<Uint8Array> | Uint8Array;

/** The specs are invalid (duplicate name, bad dtype or shape) or produce returned the wrong size. */
export class SafetensorsWriteSpecError extends QllamaError {}
/** The disk filled up (ENOSPC / EDQUOT) while writing. */
export class DiskFullError extends QllamaError {}
/** Any other I/O failure while writing (permissions, missing folder, …). */
export class SafetensorsWriteError extends QllamaError {}

export function tensorByteSize(t: TensorSpec): number {
  return t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype];
}

/** Header JSON bytes, padded with spaces to a multiple of 8 so the data starts 8-aligned. */
export function encodeHeader(specs: readonly TensorSpec[], metadata?: Readonly<Record<string, string>>): Buffer {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const s of specs) {
    const size = tensorByteSize(s);
    header[s.name] = { dtype: s.dtype, shape: s.shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const padded = Math.ceil(json.length / 8) * 8;
  const out = Buffer.alloc(8 + padded, 0x20);
  out.writeBigUInt64LE(BigInt(padded), 0);
  json.copy(out, 8);
  return out;
}

function checkSpecs(file: string, specs: readonly TensorSpec[], metadata?: Readonly<Record<string, string>>): void {
  const bad = (what: string): SafetensorsWriteSpecError => new SafetensorsWriteSpecError(`cannot write ${file}: ${what}`);
  const seen = new Set<string>();
  for (const s of specs) {
    if (s.name === '__metadata__' || s.name === '') throw bad(`"${s.name}" is not a valid tensor name`);
    if (seen.has(s.name)) throw bad(`tensor "${s.name}" is listed twice`);
    seen.add(s.name);
    if (!isSafetensorsDType(s.dtype)) throw bad(`tensor "${s.name}" has unknown dtype ${JSON.stringify(s.dtype)}`);
    if (!s.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw bad(`tensor "${s.name}" has invalid shape [${s.shape.join(', ')}]`);
  }
  for (const [k, v] of Object.entries(metadata ?? {})) {
    if (typeof v !== 'string') throw bad(`metadata "${k}" must be a string`);
  }
}

function ioError(err: unknown, file: string): QllamaError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new DiskFullError(`the disk is full while writing ${file}: free some space (or write elsewhere) and run again`, { cause: err });
  }
  return new SafetensorsWriteError(`cannot write ${file} (${code ?? (err instanceof Error ? err.message : String(err))}): check the folder exists and is writable`, { cause: err });
}

async function writeAll(fh: FileHandle, data: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < data.byteLength) {
    const { bytesWritten } = await fh.write(data, done, data.byteLength - done, position + done);
    done += bytesWritten;
  }
}

/** Writes one safetensors file atomically (temp name + rename). */
export async function writeSafetensors(
  file: string,
  specs: readonly TensorSpec[],
  produce: TensorProducer,
  metadata?: Readonly<Record<string, string>>,
): Promise<void> {
  checkSpecs(file, specs, metadata);
  const header = encodeHeader(specs, metadata);
  // same folder, so the final rename is atomic (no cross-device move)
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  let fh: FileHandle | undefined;
  try {
    try {
      fh = await open(tmp, 'wx');
      await writeAll(fh, header, 0);
    } catch (err) {
      throw ioError(err, file);
    }
    let position = header.byteLength;
    for (const s of specs) {
      const bytes = await produce(s.name);
      const expected = tensorByteSize(s);
      if (bytes.byteLength !== expected) {
        throw new SafetensorsWriteSpecError(`cannot write ${file}: tensor "${s.name}" [${s.shape.join(', ')}] ${s.dtype} needs ${expected} bytes, the producer gave ${bytes.byteLength}`);
      }
      try {
        await writeAll(fh, bytes, position);
      } catch (err) {
        throw ioError(err, file);
      }
      position += expected;
    }
    try {
      await fh.datasync();
      await fh.close();
      fh = undefined;
      await rename(tmp, file);
    } catch (err) {
      throw ioError(err, file);
    }
  } catch (err) {
    await fh?.close().catch(() => undefined);
    await rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
}

/** HF's default max shard size for save_pretrained. */
export const DEFAULT_SHARD_BYTES = 5e9;

export function shardFileName(i: number, n: number): string {
  return `model-${String(i + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`;
}

/**
 * Writes tensors as a Hugging Face checkpoint: `model.safetensors` when they fit in one shard,
 * else `model-0000i-of-0000n.safetensors` plus `model.safetensors.index.json` (`weight_map`,
 * `metadata.total_size`). Shards are cut in the given order when the next tensor would pass
 * `shardBytes`; a tensor is never split (one larger than the limit gets a shard of its own).
 * Returns the written file names (the index not included).
 */
export async function writeShardedSafetensors(
  outDir: string,
  specs: readonly TensorSpec[],
  produce: TensorProducer,
  options: { shardBytes?: number; metadata?: Readonly<Record<string, string>> } = {},
): Promise<string[]> {
  const limit = options.shardBytes ?? DEFAULT_SHARD_BYTES;
  checkSpecs(outDir, specs, options.metadata);
  const shards: TensorSpec[][] = [[]];
  let size = 0;
  for (const s of specs) {
    const bytes = tensorByteSize(s);
    const last = shards[shards.length - 1];
    if (last.length > 0 && size + bytes > limit) {
      shards.push([s]);
      size = bytes;
    } else {
      last.push(s);
      size += bytes;
    }
  }
  const n = shards.length;
  const names = n === 1 ? ['model.safetensors'] : shards.map((_, i) => shardFileName(i, n));
  const index = path.join(outDir, 'model.safetensors.index.json');
  // A stale index (or single file) from an earlier run with another shard count would shadow the new files.
  await rm(n === 1 ? index : path.join(outDir, 'model.safetensors'), { force: true });
  const metadata = { format: 'pt', ...options.metadata };
  for (let i = 0; i < n; i++) await writeSafetensors(path.join(outDir, names[i]), shards[i], produce, metadata);
  if (n > 1) {
    const weightMap: Record<string, string> = {};
    shards.forEach((shard, i) => { for (const s of shard) weightMap[s.name] = names[i]; });
    const json = { metadata: { total_size: specs.reduce((a, s) => a + tensorByteSize(s), 0) }, weight_map: weightMap };
    await writeTextAtomic(index, `${JSON.stringify(json, null, 2)}\n`);
  }
  return names;
}

async function writeTextAtomic(file: string, text: string): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  let fh: FileHandle | undefined;
  try {
    fh = await open(tmp, 'w');
    await writeAll(fh, Buffer.from(text, 'utf8'), 0);
    await fh.close();
    fh = undefined;
    await rename(tmp, file);
  } catch (err) {
    await fh?.close().catch(() => undefined);
    await rm(tmp, { force: true }).catch(() => undefined);
    throw ioError(err, file);
  }
}
