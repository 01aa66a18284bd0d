import { HALF_TO_FLOAT } from '../backends/cpu/kernels/half.js';

/**
 * Bulk f32 ↔ fp16 for the calibration activations, which the quantizer keeps in fp16 between
 * passes (as GPTQ-for-LLaMa does: it runs the whole model in fp16), halving the largest buffers
 * of a run. Rounding is to nearest, ties to even, like torch's `.half()`.
 */

/** dst[i] = half(src[i]) for i < n. */
export function encodeHalf(src: Float32Array, dst: Uint16Array, n = src.length): void {
  const bits = new Uint32Array(src.buffer, src.byteOffset, n);
  for (let i = 0; i < n; i++) {
    const x = bits[i];
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    let mant = x & 0x7fffff;
    const e = exp - 112; // exp − 127 + 15
    if (e > 0 && e < 0x1f) {
      const h = (e << 10) | (mant >>> 13);
      const rem = mant & 0x1fff;
      dst[i] = sign | (rem > 0x1000 || (rem === 0x1000 && (h & 1)) ? h + 1 : h); // a carry bumps the exponent (to inf at the top)
    } else if (exp === 0xff) {
      dst[i] = sign | 0x7c00 | (mant ? 0x200 : 0);
    } else if (e >= 0x1f) {
      dst[i] = sign | 0x7c00;
    } else if (e < -10) {
      dst[i] = sign;
    } else {
      mant |= 0x800000;
      const shift = 14 - e;
      const h = mant >>> shift;
      const rem = mant & ((1 << shift) - 1);
      const mid = 1 << (shift - 1);
      dst[i] = sign | (rem > mid || (rem === mid && (h & 1)) ? h + 1 : h);
    }
  }
}

/** dst[i] = float(src[i]) for i < n. */
export function decodeHalf(src: Uint16Array, dst: Float32Array, n = src.length): void {
  const table = HALF_TO_FLOAT;
  for (let i = 0; i < n; i++) dst[i] = table[src[i]];
}

export function toHalfArray(src: Float32Array): Uint16Array {
  const out = new Uint16Array(src.length);
  encodeHalf(src, out);
  return out;
}
