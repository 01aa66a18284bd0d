import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { ModelLoadError } from '../errors.js';
import { MissingTensorError, SafetensorsFile, type TensorEntry } from './safetensors.js';

/** A shard named in model.safetensors.index.json is not on disk. */
export class MissingShardError extends ModelLoadError {}
/** model.safetensors.index.json is unreadable, or disagrees with the shards. */
export class ShardIndexError extends ModelLoadError {}

export const SHARD_INDEX = 'model.safetensors.index.json';

/**
 * The tensors of one checkpoint, from a single .safetensors file or from shards listed in
 * `model.safetensors.index.json` (`weight_map`: tensor name → shard file). Every shard is
 * opened (headers validated) up front so a missing or corrupt shard fails at load, not
 * mid-forward; tensor data is read lazily.
 */
export class WeightStore {
  private constructor(
    private readonly files: readonly SafetensorsFile[],
    private readonly byName: ReadonlyMap<string, SafetensorsFile>,
    /** the .safetensors file or the index .json this store was opened from */
    readonly source: string,
  ) {}

  /**
   * `pathOrDir`: a .safetensors file, an index .json, or a folder (its index, else its only
   * .safetensors). With `weightsFile`, that file inside `pathOrDir`.
   */
  static open(pathOrDir: string, weightsFile?: string): WeightStore {
    const target = weightsFile ? path.resolve(pathOrDir, weightsFile) : pathOrDir;
    if (!existsSync(target)) throw new ModelLoadError(`weights "${target}" do not exist: check the path (or pick a file with --weights)`);
    if (statSync(target).isDirectory()) return WeightStore.open(resolveFolder(target));
    if (target.endsWith('.json')) return WeightStore.openIndex(target);
    const file = SafetensorsFile.open(target);
    return new WeightStore([file], new Map(file.names().map((n) => [n, file])), target);
  }

  private static openIndex(indexPath: string): WeightStore {
    const map = readWeightMap(indexPath);
    const dir = path.dirname(indexPath);
    const shardNames = [...new Set(Object.values(map))].sort();
    const missing = shardNames.filter((s) => !existsSync(path.join(dir, s)));
    if (missing.length > 0) {
      throw new MissingShardError(`${indexPath} lists ${missing.length} shard(s) that are not in ${dir}: ${missing.join(', ')}; the download is incomplete, download them again`);
    }
    const shards = new Map<string, SafetensorsFile>();
    try {
      for (const s of shardNames) shards.set(s, SafetensorsFile.open(path.join(dir, s)));
      const byName = new Map<string, SafetensorsFile>();
      for (const [name, shard] of Object.entries(map)) {
        const file = shards.get(shard) as SafetensorsFile;
        if (!file.has(name)) throw new ShardIndexError(`${indexPath} maps "${name}" to ${shard}, which does not hold it: the shards and the index come from different downloads`);
        byName.set(name, file);
      }
      return new WeightStore([...shards.values()], byName, indexPath);
    } catch (err) {
      for (const f of shards.values()) f.close();
      throw err;
    }
  }

  /** Tensor names (header order; shard by shard for an index). */
  names(): string[] {
    return [...this.byName.keys()];
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  entry(name: string): TensorEntry {
    return this.file(name).entry(name);
  }

  /** The raw little-endian bytes of one tensor, read from disk now. */
  read(name: string): Buffer {
    return this.file(name).read(name);
  }

  /** The raw bytes of one tensor through the thread pool, into `into` when given (see SafetensorsFile.readAsync). */
  async readAsync(name: string, into?: Uint8Array): Promise<Uint8Array> {
    return this.file(name).readAsync(name, into);
  }

  close(): void {
    for (const f of this.files) f.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  private file(name: string): SafetensorsFile {
    const f = this.byName.get(name);
    if (!f) throw new MissingTensorError(`tensor "${name}" is not in ${this.source}: the checkpoint is incomplete or belongs to another model`);
    return f;
  }
}

function resolveFolder(dir: string): string {
  const index = path.join(dir, SHARD_INDEX);
  if (existsSync(index)) return index;
  const files = readdirSync(dir).filter((f) => f.endsWith('.safetensors')).sort();
  if (files.length === 1) return path.join(dir, files[0]);
  if (files.length === 0) throw new ModelLoadError(`${dir} holds no *.safetensors weights and no ${SHARD_INDEX}: download the model's weights into it`);
  throw new ModelLoadError(`${dir} holds ${files.length} .safetensors files (${files.join(', ')}) and no ${SHARD_INDEX}: name the one to load`);
}

function readWeightMap(indexPath: string): Record<string, string> {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(indexPath, 'utf8'));
  } catch (err) {
    throw new ShardIndexError(`cannot read the shard index ${indexPath} (${err instanceof Error ? err.message : String(err)}): download it again`);
  }
  const map = (raw as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) {
    throw new ShardIndexError(`${indexPath} has no "weight_map" object: it is not a safetensors shard index`);
  }
  for (const [name, shard] of Object.entries(map)) {
    // a shard path escaping the folder would read files the index has no business naming
    if (typeof shard !== 'string' || shard.includes('/') || shard.includes('\\') || !shard.endsWith('.safetensors')) {
      throw new ShardIndexError(`${indexPath}: "${name}" maps to ${JSON.stringify(shard)}, not a .safetensors file name in the same folder`);
    }
  }
  return map as Record<string, string>;
}
