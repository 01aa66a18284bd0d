import { upperCholeskyOfInverseInPlace } from './linalg.js';
import { allocParams, findGroupParams, quantGrid, quantizeLevel, transposeF64, type ChannelParams } from './quantizer.js';
import type { QuantizedLinear, QuantizeSettings } from './types.js';

/**
 * GPTQ (Frantar et al. 2022) for one linear layer, with GPTQ-for-LLaMa's `fasterquant` semantics:
 *  - dead inputs (H[i,i] = 0) get H[i,i] = 1 and weight 0;
 *  - act-order: columns are visited by descending H[i,i]; g_idx maps each original column to
 *    the group it was quantized in (groups are runs of `groupSize` in the visiting order);
 *  - H += damp · mean(diag H) · I, then U = upper Cholesky factor of H⁻¹;
 *  - columns are quantized one by one; column j's error e = (w − q) / U[j,j] moves every later
 *    column k by −e·U[j,k], immediately inside the current block, lazily (one matmul) after it;
 *  - a group's scale/zero come from the error-updated weights at the group's first column
 *    (static groups: from the original weights, once, before anything moves).
 * The Hessian is copied once (permuted and damped) and factored in place; it is not modified.
 * Weights are held transposed, `wt [cols, rows]`, so one input column is one contiguous row and
 * every update is an axpy over contiguous memory.
 */
export function gptqQuantize(
  w: Float32Array, // [rows = out, cols = in]
  hessian: Float64Array, // [cols, cols], 2/n·ΣXXᵀ; not modified
  rows: number,
  cols: number,
  settings: QuantizeSettings,
): QuantizedLinear {
  const grid = quantGrid(settings.bits, settings.sym);
  const grouped = settings.groupSize !== -1;
  const gs = grouped ? settings.groupSize : cols;
  const groups = Math.ceil(cols / gs);
  const wt = transposeF64(w, rows, cols); // [cols, rows]

  // One group: GPTQ-for-LLaMa finds the row parameters before zeroing dead columns.
  const params = allocParams(rows);
  if (!grouped) findGroupParams(grid, wt, rows, 0, cols, params);

  const diag = new Float64Array(cols);
  for (let i = 0; i < cols; i++) {
    diag[i] = hessian[i * cols + i];
    if (diag[i] !== 0) continue;
    diag[i] = 1;
    wt.fill(0, i * rows, (i + 1) * rows);
  }

  const staticParams: ChannelParams[] | undefined = grouped && settings.staticGroups
    ? Array.from({ length: groups }, (_, g) => {
      const p = allocParams(rows);
      findGroupParams(grid, wt, rows, g * gs, Math.min((g + 1) * gs, cols), p);
      return p;
    })
    : undefined;

  const perm = settings.actOrder ? descendingOrder(diag) : identity(cols);
  const wp = settings.actOrder ? permuteRows(wt, perm, rows) : wt; // [cols, rows] in visiting order
  // H in visiting order, dead columns' diagonal 1, damped: the one n² copy GPTQ makes (the
  // factorization below runs in place on it)
  const hp = permuteSymmetric(hessian, perm, cols);
  let diagSum = 0;
  for (let i = 0; i < cols; i++) diagSum += diag[i];
  const damp = settings.damp * (diagSum / cols);
  for (let i = 0; i < cols; i++) hp[i * cols + i] = diag[perm[i]] + damp;
  const u = upperCholeskyOfInverseInPlace(hp, cols); // [cols, cols] upper

  const scales = new Float32Array(groups * rows);
  const zeros = new Uint8Array(groups * rows);
  const record = (g: number, p: ChannelParams): void => {
    for (let o = 0; o < rows; o++) {
      scales[g * rows + o] = p.scale[o];
      zeros[g * rows + o] = p.zero[o];
    }
  };
  if (staticParams) staticParams.forEach((p, g) => record(g, p));
  else if (!grouped) record(0, params);

  // Blocks never split a group, so a group's parameters always see fully updated weights.
  const base = settings.blockSize ?? 128;
  const bs = grouped && !staticParams ? (gs >= base ? gs : Math.floor(base / gs) * gs) : base;
  const qPerm = new Uint8Array(cols * rows); // [cols (visiting order), rows]
  const err = new Float64Array(bs * rows); // [block, rows] scaled errors
  let loss = 0;

  for (let i1 = 0; i1 < cols; i1 += bs) {
    const i2 = Math.min(i1 + bs, cols);
    for (let j = i1; j < i2; j++) {
      let p = params;
      if (staticParams) {
        p = staticParams[Math.floor(perm[j] / gs)];
      } else if (grouped && j % gs === 0) {
        findGroupParams(grid, wp, rows, j, Math.min(j + gs, cols), params);
        record(j / gs, params);
      }
      const d = u[j * cols + j];
      const wOff = j * rows;
      const eOff = (j - i1) * rows;
      for (let o = 0; o < rows; o++) {
        const wv = wp[wOff + o];
        const level = quantizeLevel(wv, p.scale[o], p.zero[o], grid.maxq);
        qPerm[wOff + o] = level;
        const e = (wv - p.scale[o] * (level - p.zero[o])) / d;
        err[eOff + o] = e;
        loss += e * e;
      }
      for (let k = j + 1; k < i2; k++) {
        const c = u[j * cols + k];
        if (c === 0) continue;
        const kOff = k * rows;
        for (let o = 0; o < rows; o++) wp[kOff + o] -= c * err[eOff + o];
      }
    }
    lazyUpdate(wp, err, u, rows, cols, i1, i2);
  }

  const q = new Uint8Array(cols * rows); // [in, out], original order
  const gIdx = new Int32Array(cols);
  for (let j = 0; j < cols; j++) {
    const orig = perm[j];
    q.set(qPerm.subarray(j * rows, (j + 1) * rows), orig * rows);
    gIdx[orig] = Math.floor((staticParams ? orig : j) / gs);
  }
  return { inFeatures: cols, outFeatures: rows, bits: settings.bits, groupSize: gs, groups, q, zeros, scales, gIdx, loss: loss / 2 };
}

/** wp[k, :] −= Σ_{j∈[i1,i2)} U[j, k] · err[j − i1, :] for every k ≥ i2 (GPTQ's `W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]`). */
function lazyUpdate(wp: Float64Array, err: Float64Array, u: Float64Array, rows: number, cols: number, i1: number, i2: number): void {
  const count = i2 - i1;
  const c = new Float64Array(count);
  for (let k = i2; k < cols; k++) {
    for (let j = 0; j < count; j++) c[j] = u[(i1 + j) * cols + k];
    const kOff = k * rows;
    let j = 0;
    for (; j + 3 < count; j += 4) {
      const c0 = c[j], c1 = c[j + 1], c2 = c[j + 2], c3 = c[j + 3];
      const e0 = j * rows, e1 = e0 + rows, e2 = e1 + rows, e3 = e2 + rows;
      for (let o = 0; o < rows; o++) wp[kOff + o] -= c0 * err[e0 + o] + c1 * err[e1 + o] + c2 * err[e2 + o] + c3 * err[e3 + o];
    }
    for (; j < count; j++) {
      const cj = c[j];
      const e = j * rows;
      for (let o = 0; o < rows; o++) wp[kOff + o] -= cj * err[e + o];
    }
  }
}

/** Column order by descending H[i,i]; ties keep index order (torch.argsort is not stable, so any tie order is valid). */
export function descendingDiagonalOrder(h: Float64Array, n: number): Int32Array {
  return descendingOrder(Float64Array.from({ length: n }, (_, i) => h[i * n + i]));
}

function descendingOrder(d: Float64Array): Int32Array {
  const idx = Array.from({ length: d.length }, (_, i) => i);
  idx.sort((a, b) => d[b] - d[a] || a - b);
  return Int32Array.from(idx);
}

function identity(n: number): Int32Array {
  return Int32Array.from({ length: n }, (_, i) => i);
}

function permuteRows(a: Float64Array, perm: Int32Array, width: number): Float64Array {
  const out = new Float64Array(a.length);
  for (let j = 0; j < perm.length; j++) out.set(a.subarray(perm[j] * width, (perm[j] + 1) * width), j * width);
  return out;
}

function permuteSymmetric(h: Float64Array, perm: Int32Array, n: number): Float64Array {
  const out = new Float64Array(n * n);
  for (let a = 0; a < n; a++) {
    const src = perm[a] * n;
    for (let b = 0; b < n; b++) out[a * n + b] = h[src + perm[b]];
  }
  return out;
}
