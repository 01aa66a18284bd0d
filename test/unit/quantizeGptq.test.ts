import { test } from 'node:test';
import assert from 'node:assert/strict';
import { descendingDiagonalOrder, gptqQuantize } from '../../src/quantize/gptq.js';
import { reconstructionError } from '../../src/quantize/hessian.js';
import { channelParams, quantGrid, quantizeLevel } from '../../src/quantize/quantizer.js';
import { rtnQuantize } from '../../src/quantize/rtn.js';
import { dequantize, type QuantizeSettings } from '../../src/quantize/types.js';
import { lcg } from './quantizeSupport.js';

/** A small correlated problem: W [rows, cols], H = 2/n·XᵀX from X with a few shared factors. */
function problem(rows: number, cols: number, seed: number): { w: Float32Array; h: Float64Array } {
  const rnd = lcg(seed);
  const gauss = (): number => Math.sqrt(-2 * Math.log(rnd() + 1e-12)) * Math.cos(2 * Math.PI * rnd());
  const w = Float32Array.from({ length: rows * cols }, () => gauss() * 0.1);
  const t = 4 * cols;
  const factors = Array.from({ length: 4 }, () => Float64Array.from({ length: cols }, gauss));
  const scale = Float64Array.from({ length: cols }, () => 0.2 + 2 * rnd());
  const h = new Float64Array(cols * cols);
  const x = new Float64Array(cols);
  for (let s = 0; s < t; s++) {
    const f = factors.map(() => gauss());
    for (let i = 0; i < cols; i++) x[i] = scale[i] * (gauss() + f.reduce((a, fk, k) => a + fk * factors[k][i], 0));
    for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) h[i * cols + j] += (2 / t) * x[i] * x[j];
  }
  return { w, h };
}

/** Gauss–Jordan inverse (independent of the Cholesky code under test). */
function gaussJordanInverse(a: Float64Array, n: number): Float64Array {
  const m = Float64Array.from(a);
  const inv = new Float64Array(n * n);
  for (let i = 0; i < n; i++) inv[i * n + i] = 1;
  for (let c = 0; c < n; c++) {
    const p = m[c * n + c];
    for (let j = 0; j < n; j++) { m[c * n + j] /= p; inv[c * n + j] /= p; }
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = m[r * n + c];
      for (let j = 0; j < n; j++) { m[r * n + j] -= f * m[c * n + j]; inv[r * n + j] -= f * inv[c * n + j]; }
    }
  }
  return inv;
}

/**
 * The textbook OBS sequence (GPTQ paper, eqs. 2–3), column by column, no blocks, no Cholesky:
 * quantize column j, spread its error over all later columns with the current inverse Hessian,
 * then remove j from the inverse (Hinv −= Hinv[:,j]·Hinv[j,:] / Hinv[j,j]).
 */
function naiveObs(w0: Float32Array, h0: Float64Array, rows: number, cols: number, s: QuantizeSettings): { levels: Uint8Array; deq: Float64Array } {
  const grid = quantGrid(s.bits, s.sym);
  const gs = s.groupSize === -1 ? cols : s.groupSize;
  const h = Float64Array.from(h0);
  const w = Float64Array.from(w0);
  for (let i = 0; i < cols; i++) if (h[i * cols + i] === 0) { h[i * cols + i] = 1; for (let o = 0; o < rows; o++) w[o * cols + i] = 0; }
  const perm = s.actOrder ? descendingDiagonalOrder(h, cols) : Int32Array.from({ length: cols }, (_, i) => i);
  const wp = new Float64Array(rows * cols);
  const hp = new Float64Array(cols * cols);
  for (let a = 0; a < cols; a++) {
    for (let o = 0; o < rows; o++) wp[o * cols + a] = w[o * cols + perm[a]];
    for (let b = 0; b < cols; b++) hp[a * cols + b] = h[perm[a] * cols + perm[b]];
  }
  let mean = 0;
  for (let i = 0; i < cols; i++) mean += hp[i * cols + i] / cols;
  for (let i = 0; i < cols; i++) hp[i * cols + i] += s.damp * mean;
  const hinv = gaussJordanInverse(hp, cols);
  const levels = new Uint8Array(rows * cols); // [rows, cols] in visiting order
  const deq = new Float64Array(rows * cols);
  let params: { scale: number; zero: number }[] = [];
  for (let j = 0; j < cols; j++) {
    if (j % gs === 0) {
      params = [];
      for (let o = 0; o < rows; o++) {
        let mn = Infinity, mx = -Infinity;
        for (let c = j; c < Math.min(j + gs, cols); c++) { mn = Math.min(mn, wp[o * cols + c]); mx = Math.max(mx, wp[o * cols + c]); }
        params.push(channelParams(grid, mn, mx));
      }
    }
    const d = hinv[j * cols + j];
    for (let o = 0; o < rows; o++) {
      const { scale, zero } = params[o];
      const lv = quantizeLevel(wp[o * cols + j], scale, zero, grid.maxq);
      levels[o * cols + j] = lv;
      deq[o * cols + j] = scale * (lv - zero);
      const e = (wp[o * cols + j] - deq[o * cols + j]) / d;
      for (let k = j + 1; k < cols; k++) wp[o * cols + k] -= e * hinv[j * cols + k];
    }
    const col = Float64Array.from({ length: cols }, (_, r) => hinv[r * cols + j]);
    const row = hinv.slice(j * cols, (j + 1) * cols);
    for (let r = 0; r < cols; r++) for (let c = 0; c < cols; c++) hinv[r * cols + c] -= (col[r] * row[c]) / d;
  }
  // back to the original column order
  const lv = new Uint8Array(rows * cols);
  const dq = new Float64Array(rows * cols);
  for (let a = 0; a < cols; a++) for (let o = 0; o < rows; o++) { lv[o * cols + perm[a]] = levels[o * cols + a]; dq[o * cols + perm[a]] = deq[o * cols + a]; }
  return { levels: lv, deq: dq };
}

const BASE: QuantizeSettings = { bits: 3, groupSize: 16, actOrder: false, staticGroups: false, sym: false, damp: 0.01, blockSize: 32 };

for (const [label, s] of [
  ['3-bit g16, blocks of 32', BASE],
  ['4-bit one group, blocks of 8', { ...BASE, bits: 4, groupSize: -1, blockSize: 8 }],
  ['2-bit g8 act-order, blocks of 32', { ...BASE, bits: 2, groupSize: 8, actOrder: true }],
  ['4-bit g16 sym, blocks of 128 (one block)', { ...BASE, bits: 4, sym: true, blockSize: 128 }],
] as const) {
  test(`blocked lazy-update GPTQ equals the unblocked OBS sequence: ${label}`, () => {
    const rows = 6, cols = 64;
    const { w, h } = problem(rows, cols, 5);
    const ql = gptqQuantize(w, h, rows, cols, s);
    const ref = naiveObs(w, h, rows, cols, s);
    const got = dequantize(ql);
    let mismatches = 0;
    for (let o = 0; o < rows; o++) {
      for (let i = 0; i < cols; i++) {
        if (ql.q[i * rows + o] !== ref.levels[o * cols + i]) mismatches++;
        else assert.ok(Math.abs(got[o * cols + i] - ref.deq[o * cols + i]) < 1e-6, `W[${o},${i}]`);
      }
    }
    assert.equal(mismatches, 0, 'every level matches');
  });
}

test('GPTQ beats round-to-nearest on ‖(W−Q)X‖²', () => {
  const rows = 16, cols = 64;
  const { w, h } = problem(rows, cols, 9);
  const s = { ...BASE, bits: 3 as const };
  const g = reconstructionError(w, dequantize(gptqQuantize(w, h, rows, cols, s)), h, rows, cols, 1);
  const r = reconstructionError(w, dequantize(rtnQuantize(w, rows, cols, s)), h, rows, cols, 1);
  assert.ok(g < 0.7 * r, `gptq ${g} vs rtn ${r}`);
});

test('act-order: columns by descending diag(H); g_idx maps each column to its group in that order', () => {
  const rows = 4, cols = 32, gs = 8;
  const { w, h } = problem(rows, cols, 21);
  const ql = gptqQuantize(w, h, rows, cols, { ...BASE, groupSize: gs, actOrder: true });
  const perm = descendingDiagonalOrder(h, cols);
  for (let j = 1; j < cols; j++) assert.ok(h[perm[j - 1] * cols + perm[j - 1]] >= h[perm[j] * cols + perm[j]]);
  for (let j = 0; j < cols; j++) assert.equal(ql.gIdx[perm[j]], Math.floor(j / gs), `column ${perm[j]} (visited ${j}th)`);
  const counts = new Array<number>(cols / gs).fill(0);
  for (const g of ql.gIdx) counts[g]++;
  assert.deepEqual(counts, [gs, gs, gs, gs]);
  assert.ok(ql.gIdx.some((g, i) => g !== Math.floor(i / gs)), 'g_idx is not the trivial order');
  // each column's dequantized value lies on its group's grid
  const deq = dequantize(ql);
  for (let i = 0; i < cols; i++) {
    for (let o = 0; o < rows; o++) {
      const g = ql.gIdx[i];
      const v = ql.scales[g * rows + o] * (ql.q[i * rows + o] - ql.zeros[g * rows + o]);
      assert.equal(deq[o * cols + i], Math.fround(v));
    }
  }
});

test('static groups: parameters from the original weights, g_idx stays i / groupsize under act-order', () => {
  const rows = 4, cols = 32, gs = 8;
  const { w, h } = problem(rows, cols, 33);
  const ql = gptqQuantize(w, h, rows, cols, { ...BASE, groupSize: gs, actOrder: true, staticGroups: true });
  for (let i = 0; i < cols; i++) assert.equal(ql.gIdx[i], Math.floor(i / gs));
  const grid = quantGrid(3, false);
  for (let g = 0; g < cols / gs; g++) {
    for (let o = 0; o < rows; o++) {
      const vals = Array.from({ length: gs }, (_, k) => w[o * cols + g * gs + k]);
      const p = channelParams(grid, Math.min(...vals), Math.max(...vals));
      assert.equal(ql.scales[g * rows + o], Math.fround(p.scale));
      assert.equal(ql.zeros[g * rows + o], p.zero);
    }
  }
});

test('dead inputs (H[i,i] = 0) quantize to exactly 0', () => {
  const rows = 4, cols = 16;
  const { w, h } = problem(rows, cols, 2);
  for (let j = 0; j < cols; j++) { h[3 * cols + j] = 0; h[j * cols + 3] = 0; }
  const deq = dequantize(gptqQuantize(w, h, rows, cols, { ...BASE, groupSize: -1 }));
  for (let o = 0; o < rows; o++) assert.equal(deq[o * cols + 3], 0);
});
