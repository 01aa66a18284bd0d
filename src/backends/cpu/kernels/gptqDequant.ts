import type { GptqLinearHost } from '../../../formats/gptqTypes.js';
import { HALF_TO_FLOAT } from './half.js';

/**
 * GPTQ weights prepared for the plain CPU kernels: scales and zero points unpacked to f32 once
 * at upload, quantized values left packed (2/4/8-bit) or unpacked to bytes (3-bit, whose
 * 32-values-in-3-words packing makes per-element extraction awkward).
 */
export interface CpuGptq {
  readonly layer: GptqLinearHost;
  /** [groups, out] */
  readonly scales: Float32Array;
  /** [groups, out], the true zero point (stored value + 1) */
  readonly zeros: Float32Array;
  /** [in, out] quantized values, only for 3-bit */
  readonly unpacked3?: Uint8Array;
}

export function prepareGptq(layer: GptqLinearHost, unpack3: (l: GptqLinearHost) => Uint8Array): CpuGptq {
  const { groups, outFeatures: out, bits } = layer;
  const scales = new Float32Array(groups * out);
  for (let i = 0; i < scales.length; i++) scales[i] = HALF_TO_FLOAT[layer.scales[i]];
  const zeros = new Float32Array(groups * out);
  const perWord = 32 / bits;
  const mask = (1 << bits) - 1;
  const zeroWords = (out * bits) / 32;
  for (let g = 0; g < groups; g++) {
    for (let o = 0; o < out; o++) {
      let stored: number;
      if (bits === 3) {
        // 3-bit zeros use the same 32-in-3-words packing along the output dim
        const bit = o * 3;
        const word = g * zeroWords + Math.floor(bit / 32);
        const shift = bit % 32;
        const lo = layer.qzeros[word] >>> shift;
        const hi = shift > 29 ? layer.qzeros[word + 1] << (32 - shift) : 0;
        stored = (lo | hi) & 7;
      } else {
        stored = (layer.qzeros[g * zeroWords + Math.floor(o / perWord)] >>> ((o % perWord) * bits)) & mask;
      }
      zeros[g * out + o] = stored + 1;
    }
  }
  return { layer, scales, zeros, unpacked3: bits === 3 ? unpack3(layer) : undefined };
}

/**
 * Dequantize output rows o0..o0+n-1 into w `[n, in]` f32:
 * W[o, i] = scales[g, o] · (q[i, o] − zero[g, o]), g = gIdx[i].
 * Walks qweight row by row (it is `[in·bits/32, out]`, so consecutive outputs are adjacent words).
 */
export function dequantizeOutputRows(p: CpuGptq, o0: number, n: number, w: Float32Array): void {
  const { inFeatures: inF, outFeatures: out, bits, gIdx, qweight } = p.layer;
  const { scales, zeros } = p;
  if (p.unpacked3) {
    const q = p.unpacked3;
    for (let i = 0; i < inF; i++) {
      const gOff = gIdx[i] * out;
      for (let j = 0; j < n; j++) {
        const o = o0 + j;
        w[j * inF + i] = scales[gOff + o] * (q[i * out + o] - zeros[gOff + o]);
      }
    }
    return;
  }
  const perWord = 32 / bits;
  const mask = (1 << bits) - 1;
  const packedRows = inF / perWord;
  for (let r = 0; r < packedRows; r++) {
    const rowOff = r * out;
    for (let j = 0; j < n; j++) {
      const o = o0 + j;
      const word = qweight[rowOff + o];
      const wRow = j * inF;
      for (let k = 0; k < perWord; k++) {
        const i = r * perWord + k;
        const gOff = gIdx[i] * out + o;
        w[wRow + i] = scales[gOff] * (((word >>> (k * bits)) & mask) - zeros[gOff]);
      }
    }
  }
}
