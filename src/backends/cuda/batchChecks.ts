/**
 * Host-side checks of the batched decode ops' operands (ropeRows, writeKvRows, attentionRows), made
 * before anything is launched: the kernels index caches and positions without bounds checks.
 */
import type { BatchKv } from './batchTables.js';

/** rows ≥ 1, positions[0..rows) integers ≥ 0, and an activation of at least `rows` rows and `cols` columns. */
export function checkRows(op: string, rows: number, positions: Int32Array, a: { readonly rows: number; readonly cols: number }, cols: number): void {
  if (!Number.isInteger(rows) || rows < 1) throw new RangeError(`${op}: rows must be a positive integer, not ${rows}`);
  if (positions.length < rows) throw new RangeError(`${op}: ${positions.length} positions for ${rows} rows`);
  for (let t = 0; t < rows; t++) if (positions[t] < 0) throw new RangeError(`${op}: row ${t} has position ${positions[t]}`);
  if (a.rows < rows || a.cols < cols) throw new RangeError(`${op}: an activation of [${a.rows}, ${a.cols}] for ${rows} rows of ${cols}`);
}

/**
 * Every row's cache has `kvHeads` × `headDim` and the layer, and holds its position; returns the
 * largest position (attention plans its splits for it).
 */
export function checkCaches(op: string, caches: readonly BatchKv[], layer: number, positions: Int32Array, rows: number,
  kvHeads: number, headDim: number): number {
  if (caches.length < rows) throw new RangeError(`${op}: ${caches.length} KV caches for ${rows} rows`);
  let maxPos = 0;
  for (let t = 0; t < rows; t++) {
    const c = caches[t];
    if (c.kvHeads !== kvHeads || c.headDim !== headDim) {
      throw new RangeError(`${op}: row ${t}'s KV cache has ${c.kvHeads} heads of ${c.headDim}, the call ${kvHeads} of ${headDim}`);
    }
    if (!Number.isInteger(layer) || layer < 0 || layer >= c.layers) throw new RangeError(`${op}: layer ${layer} of a ${c.layers}-layer KV cache`);
    if (positions[t] >= c.maxSeq) throw new RangeError(`${op}: row ${t}'s KV cache holds ${c.maxSeq} positions, asked for ${positions[t] + 1}`);
    maxPos = Math.max(maxPos, positions[t]);
  }
  return maxPos;
}
