import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { ModelLoadError } from '../errors.js';
import { unpickle } from './torchPickle.js';
import { DTYPE_BYTES, stateDictTensors, torchHooks, TorchTensor, TorchTensorError, type TorchDtype } from './torchPickleTensors.js';
import { isLegacyFormat, openLegacyCheckpoint } from './torchPickleLegacy.js';
import { ZipFormatError, ZipReader, type ZipEntry } from './torchZip.js';

export interface TorchTensorInfo {
  readonly dtype: TorchDtype;
  readonly shape: readonly number[];
}

/** What both a single .bin and a sharded set offer: the SafetensorsFile-like read API. */
export interface TorchTensorReader {
  names(): string[];
  has(name: string): boolean;
  entry(name: string): TorchTensorInfo;
  /** the tensor's elements, row-major contiguous, in its own dtype (little-endian) */
  read(name: string): Buffer;
  close(): void;
}

/** A tensor name that is not in the checkpoint. */
export class TorchTensorNotFoundError extends ModelLoadError {}

/** Where the storages' bytes live: zip entries (`data/<key>`) or the legacy format's blobs. */
export interface StorageBytes {
  readonly path: string;
  /** byte length of a storage, undefined when the file has no such key */
  size(key: string): number | undefined;
  read(key: string, start: number, length: number): Buffer;
  close(): void;
}

class ZipStorage implements StorageBytes {
  constructor(private readonly zip: ZipReader, private readonly prefix: string) {}
  get path(): string {
    return this.zip.path;
  }
  size(key: string): number | undefined {
    return this.entry(key)?.size;
  }
  read(key: string, start: number, length: number): Buffer {
    return this.zip.read(this.entry(key) as ZipEntry, start, length);
  }
  close(): void {
    this.zip.close();
  }
  private entry(key: string): ZipEntry | undefined {
    return this.zip.entries.get(`${this.prefix}data/${key}`);
  }
}

/**
 * One PyTorch checkpoint (`pytorch_model*.bin`): the zip format of torch.save since 1.6, or the
 * legacy pickle stream before it. Opening reads the index structures and the pickle (through
 * the restricted unpickler) and checks every tensor's storage reference and extent against the
 * real byte counts, so a bad file fails at open with a named error; tensor bytes are read only
 * when asked for.
 */
export class TorchCheckpoint implements TorchTensorReader {
  constructor(private readonly storage: StorageBytes, private readonly tensors: Map<string, TorchTensor>) {
    for (const [name, t] of tensors) checkExtent(name, t, storage);
  }

  static open(file: string): TorchCheckpoint {
    if (isLegacyFormat(file)) return openLegacyCheckpoint(file);
    const zip = ZipReader.open(file);
    try {
      const pkl = [...zip.entries.values()].find((e) => /^[^/]+\/data\.pkl$/.test(e.name) || e.name === 'data.pkl');
      if (!pkl) throw new ZipFormatError(`${file}: no data.pkl inside; this zip is not a PyTorch checkpoint`);
      const prefix = pkl.name.slice(0, pkl.name.length - 'data.pkl'.length);
      const { value } = unpickle(zip.readChecked(pkl), torchHooks, 0, `${file}: data.pkl`);
      return new TorchCheckpoint(new ZipStorage(zip, prefix), stateDictTensors(value, file));
    } catch (err) {
      zip.close();
      throw err;
    }
  }

  names(): string[] {
    return [...this.tensors.keys()];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  entry(name: string): TorchTensorInfo {
    const t = this.get(name);
    return { dtype: t.storage.dtype, shape: t.shape };
  }

  read(name: string): Buffer {
    const t = this.get(name);
    const key = t.storage.key;
    const elem = DTYPE_BYTES[t.storage.dtype];
    const numel = t.shape.reduce((a, b) => a * b, 1);
    if (numel === 0) return Buffer.alloc(0);
    if (isContiguous(t)) return this.storage.read(key, t.offset * elem, numel * elem);
    // Strided view (a transpose or slice saved as is): read the span it covers, gather.
    const last = t.offset + t.shape.reduce((acc, n, i) => acc + (n - 1) * (t.stride[i] as number), 0);
    const span = this.storage.read(key, t.offset * elem, (last - t.offset + 1) * elem);
    return gather(span, t, elem, numel);
  }

  close(): void {
    this.storage.close();
  }

  private get(name: string): TorchTensor {
    const t = this.tensors.get(name);
    if (!t) throw new TorchTensorNotFoundError(`tensor "${name}" is not in this checkpoint`);
    return t;
  }
}

/** Offsets, strides and sizes must stay inside the storage, and the storage inside the file. */
function checkExtent(name: string, t: TorchTensor, storage: StorageBytes): void {
  const file = storage.path;
  const have = storage.size(t.storage.key);
  if (have === undefined) throw new TorchTensorError(`${file}: tensor "${name}" refers to storage ${t.storage.key}, which is not in the file; the file is corrupt or truncated`);
  const elem = DTYPE_BYTES[t.storage.dtype];
  if (t.storage.numel * elem > have) {
    throw new TorchTensorError(`${file}: storage ${t.storage.key} of "${name}" should hold ${t.storage.numel * elem} bytes but has ${have}; the file is corrupt`);
  }
  const numel = t.shape.reduce((a, b) => a * b, 1);
  if (!Number.isSafeInteger(numel)) throw new TorchTensorError(`${file}: tensor "${name}" has an impossible shape [${t.shape.join(', ')}]`);
  if (numel === 0) return;
  // More elements than the storage holds means an expanded (stride-0) view: never in a state
  // dict, and reading one would let a tiny file demand gigabytes.
  if (numel > t.storage.numel) throw new TorchTensorError(`${file}: tensor "${name}" has ${numel} elements but its storage only ${t.storage.numel}; expanded views are not supported`);
  const last = t.offset + t.shape.reduce((acc, n, i) => acc + (n - 1) * (t.stride[i] as number), 0);
  if (!Number.isSafeInteger(last) || last >= t.storage.numel) {
    throw new TorchTensorError(`${file}: tensor "${name}" (shape [${t.shape.join(', ')}], stride [${t.stride.join(', ')}], offset ${t.offset}) reaches element ${last} of a storage of ${t.storage.numel}; the file is corrupt`);
  }
}

function isContiguous(t: TorchTensor): boolean {
  let expected = 1;
  for (let i = t.shape.length - 1; i >= 0; i--) {
    const n = t.shape[i] as number;
    if (n !== 1 && t.stride[i] !== expected) return false;
    expected *= n;
  }
  return true;
}

function gather(span: Buffer, t: TorchTensor, elem: number, numel: number): Buffer {
  const out = Buffer.allocUnsafe(numel * elem);
  const rank = t.shape.length;
  const index = new Array<number>(rank).fill(0);
  for (let i = 0; i < numel; i++) {
    let src = 0;
    for (let d = 0; d < rank; d++) src += (index[d] as number) * (t.stride[d] as number);
    span.copy(out, i * elem, src * elem, src * elem + elem);
    for (let d = rank - 1; d >= 0; d--) {
      if (++(index[d] as number) < (t.shape[d] as number)) break;
      index[d] = 0;
    }
  }
  return out;
}

/**
 * `pytorch_model.bin.index.json` shards behind one reader; shards open on first use so that
 * listing names costs only the index. Also accepts a single .bin path or a folder holding one.
 */
export class ShardedTorchCheckpoint implements TorchTensorReader {
  private readonly open = new Map<string, TorchCheckpoint>();

  private constructor(private readonly dir: string, private readonly weightMap: Map<string, string>) {}

  static fromIndex(indexPath: string): ShardedTorchCheckpoint {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(indexPath, 'utf8'));
    } catch (err) {
      throw new ModelLoadError(`${indexPath} is not valid JSON (${(err as Error).message}); download it again`, { cause: err });
    }
    const map = (parsed as { weight_map?: unknown } | null)?.weight_map;
    if (typeof map !== 'object' || map === null) throw new ModelLoadError(`${indexPath} has no weight_map`);
    const weightMap = new Map<string, string>();
    for (const [name, shard] of Object.entries(map)) {
      if (typeof shard !== 'string' || shard.includes('..') || path.isAbsolute(shard)) throw new ModelLoadError(`${indexPath}: bad shard name for ${name}`);
      weightMap.set(name, shard);
    }
    const dir = path.dirname(indexPath);
    for (const shard of new Set(weightMap.values())) {
      if (!existsSync(path.join(dir, shard))) throw new ModelLoadError(`${indexPath} lists ${shard}, which is missing from ${dir}; download the model again`);
    }
    return new ShardedTorchCheckpoint(dir, weightMap);
  }

  names(): string[] {
    return [...this.weightMap.keys()];
  }

  has(name: string): boolean {
    return this.weightMap.has(name);
  }

  entry(name: string): TorchTensorInfo {
    return this.shard(name).entry(name);
  }

  read(name: string): Buffer {
    return this.shard(name).read(name);
  }

  close(): void {
    for (const c of this.open.values()) c.close();
    this.open.clear();
  }

  private shard(name: string): TorchCheckpoint {
    const file = this.weightMap.get(name);
    if (file === undefined) throw new TorchTensorNotFoundError(`tensor "${name}" is not in the index of ${this.dir}`);
    let c = this.open.get(file);
    if (!c) {
      c = TorchCheckpoint.open(path.join(this.dir, file));
      this.open.set(file, c);
    }
    if (!c.has(name)) throw new TorchTensorNotFoundError(`the index says ${file} holds "${name}" but it does not; the download is inconsistent`);
    return c;
  }
}

/** A .bin file, a pytorch_model.bin.index.json, or a folder holding either. */
export function openTorchCheckpoint(pathOrDir: string): TorchTensorReader {
  if (statSync(pathOrDir).isDirectory()) {
    const index = path.join(pathOrDir, 'pytorch_model.bin.index.json');
    if (existsSync(index)) return ShardedTorchCheckpoint.fromIndex(index);
    const single = path.join(pathOrDir, 'pytorch_model.bin');
    if (existsSync(single)) return TorchCheckpoint.open(single);
    throw new ModelLoadError(`${pathOrDir} holds neither pytorch_model.bin nor pytorch_model.bin.index.json`);
  }
  if (pathOrDir.endsWith('.index.json')) return ShardedTorchCheckpoint.fromIndex(pathOrDir);
  return TorchCheckpoint.open(pathOrDir);
}
