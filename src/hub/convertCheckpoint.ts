import { copyFile, mkdir, readdir } from 'node:fs/promises';
import path from 'node:path';
import { QllamaError } from '../errors.js';
import { openTorchCheckpoint } from '../formats/torchZipCheckpoint.js';
import { writeShardedSafetensors, type TensorSpec as OutputTensor } from '../formats/safetensorsWriter.js';

/** The folder has nothing to convert. */
export class NothingToConvertError extends QllamaError {}

export interface ConvertReport {
  readonly tensors: number;
  readonly files: readonly string[];
}

const PICKLE_WEIGHTS = /(\.bin|\.pt|\.pth|pytorch_model\.bin\.index\.json)$/;

/**
 * PyTorch .bin (single or sharded) → safetensors, tensor by tensor, dtypes kept. The .bin
 * files are read through the restricted unpickler, so converting an untrusted download is safe.
 * With a separate --out, the side files (config, tokenizer) are copied so the result is a
 * complete model folder.
 */
export async function convertToSafetensors(dir: string, outDir: string, options: { shardBytes?: number; log?: (line: string) => void } = {}): Promise<ConvertReport> {
  let ckpt;
  try {
    ckpt = openTorchCheckpoint(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NothingToConvertError(`${dir} does not exist`);
    throw err;
  }
  try {
    const names = ckpt.names();
    if (names.length === 0) throw new NothingToConvertError(`${dir} holds a checkpoint without tensors`);
    const tensors: OutputTensor[] = names.map((name) => ({ name, ...ckpt.entry(name) }));
    await mkdir(outDir, { recursive: true });
    let done = 0;
    const files = await writeShardedSafetensors(outDir, tensors, (name) => {
      if (++done % 50 === 0) options.log?.(`${done}/${names.length} tensors`);
      return ckpt.read(name);
    }, { shardBytes: options.shardBytes });
    if (path.resolve(outDir) !== path.resolve(dir)) {
      for (const entry of await readdir(dir, { withFileTypes: true })) {
        if (entry.isFile() && !PICKLE_WEIGHTS.test(entry.name) && !entry.name.endsWith('.safetensors') && !entry.name.endsWith('.partial')) {
          await copyFile(path.join(dir, entry.name), path.join(outDir, entry.name));
        }
      }
    }
    return { tensors: names.length, files };
  } finally {
    ckpt.close();
  }
}
