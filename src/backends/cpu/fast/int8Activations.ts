import { XMUL, XSCALE } from './kernels.js';
import { perBits } from './perBits.js';
import type { FastGptq } from './repack.js';

/** XMUL per input of a chunk of 32/bits inputs (input 2m+e → XMUL[m]), per bit width */
const fieldMul = perBits((bits) => Int32Array.from({ length: 32 / bits }, (_, i) => XMUL[bits][i >> 1]));

/**
 * Row `t` of `rows` for the int8 GEMV kernels: x quantized per block of `xBlock` inputs to
 * xq = round(x/dx), dx = max|x|/127 (symmetric, as llama.cpp's Q8_0), stored as i16 times the
 * kernel's field multipliers; per group the sum of the quantized x for the zero-point term.
 * Rows are interleaved as the kernels read them (one row: plain order):
 *   xq [K/chunk][rows][chunk] i16 · dx [K/xBlock][rows] (÷ XSCALE) · sums [groups][rows]
 * Each row's values do not depend on `rows` or `t`, so batching a row changes none of its numbers.
 */
export function quantizeRow(l: FastGptq, xv: Float32Array, xq: Int16Array, dx: Float32Array, sums: Float32Array,
  t: number, rows: number): void {
  const K = l.inFeatures, XB = l.xBlock, blocks = K / XB, bpg = blocks / l.groups;
  const chunk = 32 / l.bits, inv = 1 / XSCALE[l.bits];
  const m = fieldMul(l.bits);
  const base = t * chunk;
  let gsum = 0;
  for (let b = 0; b < blocks; b++) {
    const i0 = b * XB, i1 = i0 + XB;
    let amax = 0;
    for (let i = i0; i < i1; i++) { const a = Math.abs(xv[i]); if (a > amax) amax = a; }
    const d = amax / 127, id = amax > 0 ? 127 / amax : 0;
    let s = 0;
    for (let i = i0; i < i1; i++) {
      const q = Math.round(xv[i] * id);
      s += q;
      const j = i % chunk;
      xq[(i - j) * rows + base + j] = q * m[j];
    }
    dx[b * rows + t] = d * inv;
    gsum += d * s;
    if ((b + 1) % bpg === 0) { sums[((b + 1) / bpg - 1) * rows + t] = gsum; gsum = 0; }
  }
}
