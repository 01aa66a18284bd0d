import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { ModelLoadError } from '../errors.js';
import type { SafetensorsDType } from '../formats/safetensors.js';
import { openTorchCheckpoint } from '../formats/torchZipCheckpoint.js';
import { SHARD_INDEX, WeightStore } from '../formats/weightStore.js';

/**
 * Read access to the tensors of a model folder, whatever they are stored in: safetensors
 * (single or sharded) or PyTorch .bin (single or sharded, through the restricted unpickler).
 * Delta merging and conversion only need names, dtype/shape, and one tensor at a time.
 */
export interface TensorSource {
  /** what was opened, for messages */
  readonly origin: string;
  names(): string[];
  info(name: string): { readonly dtype: SafetensorsDType; readonly shape: readonly number[] };
  read(name: string): Buffer;
  close(): void;
}

/** Prefer safetensors when a folder has both (it is the safer, faster format). */
export function openTensorSource(pathOrDir: string): TensorSource {
  if (!existsSync(pathOrDir)) throw new ModelLoadError(`${pathOrDir} does not exist`);
  if (!statSync(pathOrDir).isDirectory()) return openFile(pathOrDir);
  const names = readdirSync(pathOrDir);
  const st = names.filter((n) => n.endsWith('.safetensors'));
  // WeightStore resolves the folder itself: its shard index, else its only .safetensors
  if (names.includes(SHARD_INDEX) || st.length === 1) return fromStore(WeightStore.open(pathOrDir), pathOrDir);
  if (st.length > 1) throw new ModelLoadError(`${pathOrDir} holds ${st.length} .safetensors files but no model.safetensors.index.json; pass the file to use`);
  if (names.includes('pytorch_model.bin.index.json') || names.includes('pytorch_model.bin')) return fromTorch(pathOrDir);
  const bins = names.filter((n) => n.endsWith('.bin') || n.endsWith('.pt') || n.endsWith('.pth'));
  if (bins.length === 1) return fromTorch(path.join(pathOrDir, bins[0] as string));
  throw new ModelLoadError(`${pathOrDir} holds no weights qllama can read (*.safetensors, pytorch_model.bin, or a .bin shard index)`);
}

function openFile(file: string): TensorSource {
  if (file.endsWith('.safetensors') || file.endsWith(SHARD_INDEX)) return fromStore(WeightStore.open(file), file);
  return fromTorch(file);
}

function fromStore(store: WeightStore, origin: string): TensorSource {
  return {
    origin,
    names: () => store.names(),
    info: (name) => store.entry(name),
    read: (name) => store.read(name),
    close: () => store.close(),
  };
}

function fromTorch(pathOrDir: string): TensorSource {
  const ckpt = openTorchCheckpoint(pathOrDir);
  return {
    origin: pathOrDir,
    names: () => ckpt.names(),
    info: (name) => ckpt.entry(name),
    read: (name) => ckpt.read(name),
    close: () => ckpt.close(),
  };
}
