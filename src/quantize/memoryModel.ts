import { chooseActivationDtype, type ActivationDtype } from './activations.js';
import { HIDDEN_CACHE_BYTES } from './layerQuantizer.js';

/**
 * What a GPTQ run holds at its peak (while the widest linear, down_proj, is being quantized),
 * component by component, from the model's shape and the recipe. The bench checks it against a
 * measured run and projects larger models with it.
 */
export interface ShapeSpec {
  readonly dim: number;
  readonly kvDim: number;
  readonly ffn: number;
  readonly vocab: number;
}

export interface RecipeSpec {
  readonly nsamples: number;
  readonly seqlen: number;
  readonly trueSequential: boolean;
  readonly actOrder: boolean;
  readonly threads: number;
  readonly activations: ActivationDtype | 'auto';
}

export type WorkingSet = Record<string, number>;

/** Bytes of each component at the peak; `total` is their sum. */
export function peakWorkingSet(m: ShapeSpec, r: RecipeSpec): WorkingSet & { total: number } {
  const { dim: d, kvDim: kv, ffn: f } = m;
  const n = r.nsamples, s = r.seqlen;
  const kPad = (s + 3) & ~3;
  const b = chooseActivationDtype(r.activations, n, s, d) === 'f16' ? 2 : 4;
  const params = 2 * d * d + 2 * kv * d + 3 * d * f; // one layer's linear weights
  const parts: WorkingSet = {
    // layer inputs, plus the attention outputs kept for o (true-sequential)
    activations: n * s * d * b * (r.trueSequential ? 2 : 1),
    // down's input kept between its two passes when small enough
    hiddenCache: r.trueSequential && n * s * f * 4 <= HIDDEN_CACHE_BYTES ? n * s * f * 4 : 0,
    // engine memory: runner buffers, V transposed and per-thread attention scores
    runner: s * (7 * d + 2 * kv + 3 * f) * 4 + kv * kPad * 4 + r.threads * 32 * kPad * 4,
    // engine memory: the weight being multiplied, X transposed for the Gram matrix, the Hessian sums
    engineSlots: f * d * 4 + f * kPad * 4 + (r.trueSequential ? f * f * 8 : (3 * d * d + f * f) * 8),
    // the layer's f32 weights, their quantized levels, one dequantized copy in flight
    layerWeights: params * 4 + params + d * f * 4,
    // GPTQ on down: the permuted damped Hessian (factored in place), weights transposed in f64 (and permuted)
    gptq: f * f * 8 + f * d * 8 * (r.actOrder ? 2 : 1) + 2 * f * d + 128 * d * 8,
  };
  const total = Object.values(parts).reduce((a, v) => a + v, 0);
  return { ...parts, total };
}

export const LLAMA_13B: ShapeSpec = { dim: 5120, kvDim: 5120, ffn: 13824, vocab: 32000 };
