import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { ModelLoadError } from '../errors.js';
import { MissingTensorError, SafetensorsFile, type TensorEntry } from './safetensors.js';

/**
 * The tensors of one checkpoint, from a single .safetensors file or from shards listed in
 * `model.safetensors.index.json` (`weight_map`: tensor name → shard file). Reads are lazy.
 */
export class WeightStore {
  private constructor(
    private readonly files: readonly SafetensorsFile[],
    private readonly byName: ReadonlyMap<string, SafetensorsFile>,
    readonly source: string,
  ) {}

  /** A .safetensors file, an index .json, or a folder holding model.safetensors.index.json. */
  static open(pathOrDir: string, weightsFile?: string): WeightStore {
    let target = weightsFile ? path.join(pathOrDir, weightsFile) : pathOrDir;
    if (existsSync(target) && statSync(target).isDirectory()) {
      const index = path.join(target, 'model.safetensors.index.json');
      if (!existsSync(index)) throw new ModelLoadError(`${target} has no model.safetensors.index.json; pass the weights file itself`);
      target = index;
    }
    if (target.endsWith('.json')) return WeightStore.openIndex(target);
    const file = SafetensorsFile.open(target);
    return new WeightStore([file], new Map(file.names().map((n) => [n, file])), target);
  }

  private static openIndex(indexPath: string): WeightStore {
    let index: { weight_map?: Record<string, string> };
    try {
      index = JSON.parse(readFileSync(indexPath, 'utf8')) as typeof index;
    } catch (err) {
      throw new ModelLoadError(`cannot read the shard index ${indexPath}: ${err instanceof Error ? err.message : String(err)}; download it again`);
    }
    const map = index.weight_map;
    if (typeof map !== 'object' || map === null) throw new ModelLoadError(`${indexPath} has no "weight_map": it is not a safetensors shard index`);
    const dir = path.dirname(indexPath);
    const shards = new Map<string, SafetensorsFile>();
    const byName = new Map<string, SafetensorsFile>();
    try {
      for (const [name, shard] of Object.entries(map)) {
        let file = shards.get(shard);
        if (!file) {
          const shardPath = path.join(dir, shard);
          if (!existsSync(shardPath)) throw new ModelLoadError(`shard ${shard} listed in ${path.basename(indexPath)} is missing from ${dir}: the download is incomplete`);
          file = SafetensorsFile.open(shardPath);
          shards.set(shard, file);
        }
        if (!file.has(name)) throw new ModelLoadError(`${path.basename(indexPath)} maps "${name}" to ${shard}, which does not hold it: the shards and index do not match`);
        byName.set(name, file);
      }
    } catch (err) {
      for (const f of shards.values()) f.close();
      throw err;
    }
    return new WeightStore([...shards.values()], byName, indexPath);
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  entry(name: string): TensorEntry {
    return this.file(name).entry(name);
  }

  read(name: string): Buffer {
    return this.file(name).read(name);
  }

  close(): void {
    for (const f of this.files) f.close();
  }

  private file(name: string): SafetensorsFile {
    const f = this.byName.get(name);
    if (!f) throw new MissingTensorError(`tensor "${name}" is not in ${this.source}: the checkpoint is incomplete or belongs to another model`);
    return f;
  }
}
