/**
 * A GPTQ-quantized linear layer as GPTQ-for-LLaMa v1 / AutoGPTQ `gptq` stores it, held on the host.
 * Shapes (I = inFeatures, O = outFeatures, G = number of groups):
 *   qweight [I·bits/32, O] int32, packed along the input dim, LSB first (3-bit: 32 values in 3 words)
 *   qzeros  [G, O·bits/32] int32, packed along the output dim, each zero stored minus one
 *   scales  [G, O] fp16 (raw half bits)
 *   gIdx    [I] int32: group of each input row (filled as i / groupSize when the file has none)
 * Dequantized weight: W[o, i] = scales[g, o] · (q[i, o] − (z[g, o] + 1)), g = gIdx[i].
 * See gptqPacking.ts for the bit layout.
 */
export type GptqBits = 2 | 3 | 4 | 8;

export interface GptqLinearHost {
  readonly kind: 'gptq';
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly bits: GptqBits;
  /** rows per group; equals inFeatures for groupsize -1 (one group) */
  readonly groupSize: number;
  readonly groups: number;
  /** true when gIdx is not the trivial i / groupSize (act-order / desc_act) */
  readonly actOrder: boolean;
  /** every zero point is 2^(bits−1) (symmetric quantization); informational, kernels use qzeros */
  readonly sym?: boolean;
  readonly qweight: Int32Array;
  readonly qzeros: Int32Array;
  readonly scales: Uint16Array;
  readonly gIdx: Int32Array;
  readonly bias?: Uint16Array;
}
