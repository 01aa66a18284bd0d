import type { LlamaConfig } from '../formats/hfConfig.js';
import { asUint16, toFloat32 } from '../formats/safetensors.js';
import type { WeightStore } from '../formats/weightStore.js';
import { ModelLoadError } from '../errors.js';
import { halfArrayToFloat } from '../backends/cpu/kernels/half.js';
import { LINEAR_NAMES, LINEAR_PATHS, layerDims, linearShape, type LayerParams, type LinearName } from './layerRunner.js';

/** Reads tensors of an fp16 (or bf16/f32) checkpoint one layer at a time, as f32. */

function readF32(store: WeightStore, name: string, shape: readonly number[]): Float32Array {
  if (!store.has(name)) throw new ModelLoadError(`tensor "${name}" is missing from ${store.source}: the checkpoint is incomplete or not a LLaMA model`);
  const e = store.entry(name);
  if (e.shape.length !== shape.length || e.shape.some((d, i) => d !== shape[i])) {
    throw new ModelLoadError(`tensor "${name}" has shape [${e.shape.join(', ')}] but config.json implies [${shape.join(', ')}]: config.json and the weights do not belong together`);
  }
  const buf = store.read(name);
  return e.dtype === 'F16' ? halfArrayToFloat(asUint16(buf)) : toFloat32(e.dtype, buf);
}

/** Layer `l`'s norms and linears `[out, in]`, f32. */
export function readLayerParams(store: WeightStore, config: LlamaConfig, l: number): LayerParams {
  const d = layerDims(config);
  const p = `model.layers.${l}`;
  const linear = {} as Record<LinearName, Float32Array>;
  for (const name of LINEAR_NAMES) {
    const s = linearShape(d, name);
    linear[name] = readF32(store, `${p}.${LINEAR_PATHS[name]}.weight`, [s.out, s.in]);
  }
  return {
    attnNorm: readF32(store, `${p}.input_layernorm.weight`, [d.dim]),
    mlpNorm: readF32(store, `${p}.post_attention_layernorm.weight`, [d.dim]),
    linear,
  };
}

/** The embedding rows of each calibration sample: `[seqlen, dim]` per sample. */
export function embedSamples(store: WeightStore, config: LlamaConfig, samples: readonly Int32Array[]): Float32Array[] {
  const dim = config.hiddenSize;
  const table = readF32(store, 'model.embed_tokens.weight', [config.vocabSize, dim]); // [vocab, dim]
  return samples.map((ids) => {
    const x = new Float32Array(ids.length * dim);
    ids.forEach((id, t) => {
      if (id < 0 || id >= config.vocabSize) throw new ModelLoadError(`token id ${id} is outside the model's vocabulary of ${config.vocabSize}: the tokenizer does not belong to this model`);
      x.set(table.subarray(id * dim, (id + 1) * dim), t * dim);
    });
    return x;
  });
}
