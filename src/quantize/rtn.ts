import { allocParams, findGroupParams, quantGrid, quantizeLevel, transposeF64 } from './quantizer.js';
import type { QuantizedLinear, QuantizeSettings } from './types.js';

/**
 * Round-to-nearest baseline (`--rtn`): the same grid and per-group min-max parameters as GPTQ,
 * no Hessian and no error feedback. Unlike GPTQ-for-LLaMa's `--nearest` (one group per row
 * whatever --groupsize says) it honours the group size, so it is the fair baseline for grouped
 * files. Act-order is meaningless without error feedback and is ignored.
 */
export function rtnQuantize(w: Float32Array /* [rows, cols] */, rows: number, cols: number, settings: QuantizeSettings): QuantizedLinear {
  const grid = quantGrid(settings.bits, settings.sym);
  const gs = settings.groupSize === -1 ? cols : settings.groupSize;
  const groups = Math.ceil(cols / gs);
  const wt = transposeF64(w, rows, cols); // [cols, rows]
  const q = new Uint8Array(cols * rows); // [in, out]
  const scales = new Float32Array(groups * rows);
  const zeros = new Uint8Array(groups * rows);
  const gIdx = new Int32Array(cols);
  const p = allocParams(rows);
  for (let g = 0; g < groups; g++) {
    const c0 = g * gs;
    const c1 = Math.min(c0 + gs, cols);
    findGroupParams(grid, wt, rows, c0, c1, p);
    for (let o = 0; o < rows; o++) {
      scales[g * rows + o] = p.scale[o];
      zeros[g * rows + o] = p.zero[o];
    }
    for (let i = c0; i < c1; i++) {
      gIdx[i] = g;
      for (let o = 0; o < rows; o++) q[i * rows + o] = quantizeLevel(wt[i * rows + o], p.scale[o], p.zero[o], grid.maxq);
    }
  }
  return { inFeatures: cols, outFeatures: rows, bits: settings.bits, groupSize: gs, groups, q, zeros, scales, gIdx, loss: 0 };
}
