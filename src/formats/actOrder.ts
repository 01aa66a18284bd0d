/**
 * Orders of a GPTQ act-order layer's features, shared by the model (which arranges producers to write
 * a consumer's input in its group order: model/weights.ts) and the backends (which reorder rows so
 * groups are contiguous: backends/cuda/linearUpload.ts). One function decides the order, so both sides
 * agree by construction.
 *
 * An order is a permutation `order` of [0, n): position i holds original index order[i], i.e. the
 * permuted vector is v'[i] = v[order[i]].
 *
 * Host-side permutations of packed layers (layouts in gptqTypes.ts):
 *   outputs (columns): qweight [I·bits/32, O] gathers whole words by column (one output per column),
 *                      scales [G, O] by column, qzeros [G, O·bits/32] value by value, bias [O]
 *   inputs (rows):     qweight repacked value by value, g_idx gathered; scales and qzeros unchanged
 */
import { getPacked, setPacked } from './gptqPacking.js';
import type { GptqLinearHost } from './gptqTypes.js';

/**
 * Input rows sorted by group, stable (rows of one group keep their file order): the group order of an
 * act-order layer. Counting sort; gIdx values must be ≥ 0.
 */
export function groupOrder(gIdx: Int32Array): Int32Array {
  let groups = 0;
  for (let k = 0; k < gIdx.length; k++) {
    const g = gIdx[k];
    if (!(g >= 0)) throw new RangeError(`groupOrder: g_idx[${k}] = ${g} is negative`);
    if (g >= groups) groups = g + 1;
  }
  const next = new Int32Array(groups + 1);
  for (let k = 0; k < gIdx.length; k++) next[gIdx[k] + 1]++;
  for (let g = 1; g <= groups; g++) next[g] += next[g - 1];
  const order = new Int32Array(gIdx.length);
  for (let k = 0; k < gIdx.length; k++) order[next[gIdx[k]]++] = k;
  return order;
}

/**
 * groupOrder(gIdx) when every group then holds exactly groupSize consecutive rows (row i in group
 * floor(i / groupSize)), which GPTQ's act-order produces; null when the groups are uneven or a g_idx
 * lies outside [0, ceil(K / groupSize)).
 */
export function groupContiguousPerm(gIdx: Int32Array, groupSize: number): Int32Array | null {
  const groups = Math.ceil(gIdx.length / groupSize);
  for (let k = 0; k < gIdx.length; k++) if (gIdx[k] < 0 || gIdx[k] >= groups) return null;
  const perm = groupOrder(gIdx);
  for (let i = 0; i < perm.length; i++) if (gIdx[perm[i]] !== Math.floor(i / groupSize)) return null;
  return perm;
}

export function isIdentity(order: Int32Array): boolean {
  for (let i = 0; i < order.length; i++) if (order[i] !== i) return false;
  return true;
}

/** Throws unless `order` is a permutation of [0, n). */
export function checkPermutation(order: Int32Array, n: number, what: string): void {
  if (order.length !== n) throw new RangeError(`${what}: the order has ${order.length} entries, expected ${n}`);
  const seen = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const j = order[i];
    if (!(j >= 0 && j < n) || seen[j]) throw new RangeError(`${what}: the order is not a permutation of [0, ${n}) (entry ${i} = ${j})`);
    seen[j] = 1;
  }
}

/** out[r, j] = src[r, order[j]] of a row-major [rows, cols] matrix. */
export function gatherColumns<T extends Int32Array | Uint16Array>(src: T, rows: number, cols: number, order: Int32Array): T {
  const out = new (src.constructor as new (n: number) => T)(rows * cols);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let j = 0; j < cols; j++) out[base + j] = src[base + order[j]];
  }
  return out;
}

/** out[i, :] = src[order[i], :] of a row-major [order.length, cols] matrix. */
export function gatherRows<T extends Int32Array | Uint16Array>(src: T, cols: number, order: Int32Array): T {
  const out = new (src.constructor as new (n: number) => T)(order.length * cols);
  for (let i = 0; i < order.length; i++) out.set(src.subarray(order[i] * cols, (order[i] + 1) * cols), i * cols);
  return out;
}

/**
 * Values of `bits`-bit streams packed along each row ([rows, words] int32, `values` per row), gathered
 * by `order` within each row: value j of row r becomes value order[j] of the source row (GPTQ qzeros).
 */
export function gatherPackedInRows(words: Int32Array, rows: number, values: number, bits: number, order: Int32Array): Int32Array {
  const stride = (values * bits) / 32;
  const out = new Int32Array(rows * stride);
  for (let r = 0; r < rows; r++) {
    const base = r * stride;
    for (let j = 0; j < values; j++) setPacked(out, base, 1, j, bits, getPacked(words, base, 1, order[j], bits));
  }
  return out;
}

/**
 * The layer's outputs permuted: output j of the result is output order[j] of `w`. With `qweight: false`
 * the qweight is left as is (a backend gathers its columns on the device).
 */
export function permuteGptqOutputs(w: GptqLinearHost, order: Int32Array, parts: { readonly qweight: boolean } = { qweight: true }): GptqLinearHost {
  const N = w.outFeatures;
  checkPermutation(order, N, 'permuteGptqOutputs');
  return {
    ...w,
    qweight: parts.qweight ? gatherColumns(w.qweight, w.qweight.length / N, N, order) : w.qweight,
    scales: gatherColumns(w.scales, w.groups, N, order),
    qzeros: gatherPackedInRows(w.qzeros, w.groups, N, w.bits, order),
    ...(w.bias ? { bias: gatherColumns(w.bias, 1, N, order) } : {}),
  };
}

/**
 * The layer for an input fed permuted (x'[i] = x[order[i]]): input row i of the result is row order[i]
 * of `w` (qweight repacked, g_idx gathered), so x' Wᵀ equals x Wᵀ. actOrder is recomputed.
 */
export function permuteGptqInputs(w: GptqLinearHost, order: Int32Array): GptqLinearHost {
  const { inFeatures: K, outFeatures: N, bits } = w;
  checkPermutation(order, K, 'permuteGptqInputs');
  const qweight = new Int32Array(w.qweight.length);
  for (let i = 0; i < K; i++) {
    const k = order[i];
    for (let o = 0; o < N; o++) setPacked(qweight, o, N, i, bits, getPacked(w.qweight, o, N, k, bits));
  }
  const gIdx = Int32Array.from(order, (k) => w.gIdx[k]);
  let actOrder = false;
  for (let i = 0; i < K && !actOrder; i++) actOrder = gIdx[i] !== Math.floor(i / w.groupSize);
  return { ...w, qweight, gIdx, actOrder };
}
