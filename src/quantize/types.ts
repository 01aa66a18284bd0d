import type { GptqBits } from '../formats/gptqTypes.js';
import type { Activations } from './activations.js';
import type { LinearName } from './layerRunner.js';

/** How to quantize each linear layer (the `qllama quantize` flags). */
export interface QuantizeSettings {
  readonly bits: GptqBits;
  /** input columns per group; −1 for one group per output row */
  readonly groupSize: number;
  /** quantize columns in order of descending Hessian diagonal (GPTQ-for-LLaMa --act-order) */
  readonly actOrder: boolean;
  /** find every group's parameters up front, so g_idx stays i / groupSize under act-order */
  readonly staticGroups: boolean;
  readonly sym: boolean;
  /** dampening, as a fraction of the mean Hessian diagonal */
  readonly damp: number;
  /** columns per lazy-update block (GPTQ's 128) */
  readonly blockSize?: number;
}

/**
 * One quantized linear, W `[out, in]` ≈ scales[g, o] · (q[i, o] − zeros[g, o]), g = gIdx[i]:
 * the unpacked form of GPTQ-for-LLaMa's QuantLinear (true zero points, not stored-minus-one).
 */
export interface QuantizedLinear {
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly bits: GptqBits;
  /** rows per group (inFeatures when groupSize was −1) */
  readonly groupSize: number;
  readonly groups: number;
  /** levels `[in, out]`, each ≤ 2^bits − 1 */
  readonly q: Uint8Array;
  /** true zero points `[groups, out]` */
  readonly zeros: Uint8Array;
  /** fp16-exact scales `[groups, out]` */
  readonly scales: Float32Array;
  /** group of each input column `[in]` */
  readonly gIdx: Int32Array;
  /** GPTQ's own loss estimate Σ (w − q)² / (2·Hinv[i,i]²); 0 for round-to-nearest */
  readonly loss: number;
}

/** The weights a loader will see, W `[out, in]` f32 (the product is exact in f32: fp16 scale × small int). */
export function dequantize(ql: QuantizedLinear): Float32Array {
  const { inFeatures: inF, outFeatures: out, q, zeros, scales, gIdx } = ql;
  const w = new Float32Array(out * inF);
  for (let i = 0; i < inF; i++) {
    const g = gIdx[i] * out;
    const qi = i * out;
    for (let o = 0; o < out; o++) w[o * inF + i] = scales[g + o] * (q[qi + o] - zeros[g + o]);
  }
  return w;
}

/**
 * Where a GPTQ run does its per-layer work (the CPU engine, or the GPU): it holds the calibration
 * activations between layers, reads each layer's weights, quantizes the layer on them and moves
 * them through the quantized layer. The pipeline around it (calibration draws, checkpoints,
 * packing, saving, progress) is the same for every implementation.
 */
export interface LayerCompute {
  /** Quantizes decoder layer `layer`; the activations are then that quantized layer's outputs. */
  quantizeLayer(layer: number, onProgress: (fraction: number, what: string) => void): Promise<Record<LinearName, QuantizedLinear>>;
  /** The activations after the last quantized layer, in the run's checkpoint dtype (valid until the next call). */
  activations(): Activations;
  dispose(): void;
}
