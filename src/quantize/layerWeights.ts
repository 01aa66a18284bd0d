import type { LlamaConfig } from '../formats/hfConfig.js';
import { asUint16, toFloat32 } from '../formats/safetensors.js';
import type { WeightStore } from '../formats/weightStore.js';
import { ModelLoadError } from '../errors.js';
import { halfArrayToFloat } from '../backends/cpu/kernels/half.js';
import { Activations, type ActivationDtype } from './activations.js';
import { toHalfArray } from './half16.js';
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

/** The embedding rows of each calibration sample (`[seqlen, dim]` each), kept as `dtype`. */
export function embedSamples(store: WeightStore, config: LlamaConfig, samples: readonly Int32Array[], dtype: ActivationDtype): Activations {
  const dim = config.hiddenSize;
  const f32 = readF32(store, 'model.embed_tokens.weight', [config.vocabSize, dim]); // [vocab, dim]
  const table = dtype === 'f16' ? toHalfArray(f32) : f32;
  const seqlen = samples[0]?.length ?? 0;
  const data = samples.map((ids) => {
    if (ids.length !== seqlen) throw new TypeError('calibration windows differ in length');
    const x = dtype === 'f16' ? new Uint16Array(seqlen * dim) : new Float32Array(seqlen * dim);
    ids.forEach((id, t) => {
      if (id < 0 || id >= config.vocabSize) throw new ModelLoadError(`token id ${id} is outside the model's vocabulary of ${config.vocabSize}: the tokenizer does not belong to this model`);
      if (x instanceof Uint16Array && table instanceof Uint16Array) x.set(table.subarray(id * dim, (id + 1) * dim), t * dim);
      else if (x instanceof Float32Array && table instanceof Float32Array) x.set(table.subarray(id * dim, (id + 1) * dim), t * dim);
    });
    return x;
  });
  return Activations.of(dtype, seqlen * dim, data);
}
