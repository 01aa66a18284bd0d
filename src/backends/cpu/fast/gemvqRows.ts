import type { QuantBits } from './kernels.js';
import { field16, Q8_MASKS } from './q8Fields.js';
import { FnBuilder, I32, V128 } from './wasmAsm.js';

/** Row counts with a multi-row int8 GEMV (`gemvqRows`); one row runs gemvq. */
export const MIN_GEMVQ_ROWS = 2;
export const MAX_GEMVQ_ROWS = 8;
export const GEMVQ_ROWS: readonly number[] = Array.from({ length: MAX_GEMVQ_ROWS - MIN_GEMVQ_ROWS + 1 }, (_, i) => MIN_GEMVQ_ROWS + i);

/**
 * Rows per register tile: 2 accumulators a row, plus 2 weight vectors, 2 fields, the x splat and
 * up to 4 masks, within V8's 16 xmm registers. 2, 3 and 4 measured the same here (the kernel is
 * bound by i32x4.dot throughput, one per cycle); an 8-row tile of one quad spilled and ran 1.6×
 * slower per row.
 */
const ROW_TILE = 3;

/** R rows as tiles of at most ROW_TILE, sizes as even as possible (8 → 3, 3, 2). */
function rowTiles(R: number): number[] {
  const n = Math.ceil(R / ROW_TILE);
  return Array.from({ length: n }, (_, i) => Math.floor((R * (i + 1)) / n) - Math.floor((R * i) / n));
}

/**
 * gemvqN_R: the int8 GEMV (gemvq in kernels.ts) for R rows at once, so each weight vector is loaded
 * and its fields unpacked once for all rows — a batched decode step reads the weights once, not R
 * times. x, dx and sumx hold the R rows interleaved:
 *
 *   xq   [K/chunk][R][chunk] i16   (chunk = 32/bits inputs, each row as gemvq wants it)
 *   dx   [K/XB][R] f32,  sumx [G][R] f32
 *   out  row r at out + r·outStride
 *
 * Each row's arithmetic is gemvq's, operation for operation (exact i32 block sums, then the same
 * f32 multiplies and adds in the same order), so every row equals the one-row kernel's result
 * bit for bit. The rows run in register tiles of ≤ ROW_TILE inside each x block: a tile holds
 * both column quads' accumulators of its rows, so each x splat feeds 2 dot products as in gemvq;
 * the next tile re-reads the x block's weights (≤ 512 bytes) from L1, so memory sees them once.
 * The per-group and final f32 sums live in `scratch` (R·64 bytes per thread), touched once per
 * x block, not per chunk.
 *
 * What this buys depends on the bound: gemvq on one row is bound by memory (2 threads, DRAM) or by
 * i32x4.dot throughput (one thread, or cached weights); the dot products per row are the same
 * here, so rows cost what one row's arithmetic costs, and only the memory stall is shared.
 */
export function gemvqRows(bits: QuantBits, R: number): FnBuilder {
  const half = 16 / bits; // fields per i16 lane
  const chunk = 2 * half; // inputs per chunk
  const xRow = chunk * 2; // bytes of one row's chunk of x
  const f = new FnBuilder(`gemvq${bits}_${R}`, Array.from({ length: 18 }, () => I32));
  const [x, dx, sumx, w, scales, negzs, out, outStride, groups, bpg, cpb, nb0, nb1, accumulate, bias, wBlockStride,
    sBlockStride, scratch] = Array.from({ length: 18 }, (_, i) => i);
  const nb = f.local(I32), xp = f.local(I32), xb = f.local(I32), dxp = f.local(I32), sxp = f.local(I32);
  const g = f.local(I32), b = f.local(I32), c = f.local(I32), wp = f.local(I32), wq = f.local(I32);
  const sp = f.local(I32), zp = f.local(I32), op = f.local(I32);
  const acc = Array.from({ length: 2 * ROW_TILE }, () => f.local(V128));
  const v = [f.local(V128), f.local(V128)], fv = [f.local(V128), f.local(V128)];
  const xs = f.local(V128), d = f.local(V128), o = f.local(V128);
  const masks = Q8_MASKS[bits].map((mv) => { const l = f.local(V128); f.i32(mv).i16x8Splat().set(l); return l; });
  /** scratch offsets of row r, quad q: the group sum and the final sum */
  const gOff = (r: number, q: number): number => (r * 2 + q) * 16;
  const fOff = (r: number, q: number): number => R * 32 + (r * 2 + q) * 16;

  f.get(nb0).set(nb);
  f.block().loop(); // output blocks
  f.get(nb).get(nb1).geU().brIf(1);
  f.get(w).get(nb).get(wBlockStride).mul().add().set(wp);
  f.get(scales).get(nb).get(sBlockStride).mul().add().set(sp);
  f.get(negzs).get(nb).get(sBlockStride).mul().add().set(zp);
  f.get(x).set(xp).get(dx).set(dxp).get(sumx).set(sxp);
  for (let r = 0; r < R; r++) for (let q = 0; q < 2; q++) f.get(scratch).v128Zero().v128Store(fOff(r, q));
  f.get(groups).set(g);
  f.loop(); // groups
  for (let r = 0; r < R; r++) for (let q = 0; q < 2; q++) f.get(scratch).v128Zero().v128Store(gOff(r, q));
  f.get(bpg).set(b);
  f.loop(); // x blocks of the group
  let r0 = 0;
  for (const T of rowTiles(R)) {
    // rows r0 .. r0+T−1, both quads: each x splat feeds 2 dot products, as in gemvq
    for (let i = 0; i < 2 * T; i++) f.v128Zero().set(acc[i]);
    f.get(wp).set(wq);
    f.get(xp).set(xb);
    f.get(cpb).set(c);
    f.loop(); // chunks of the x block
    f.get(wq).v128Load(0).set(v[0]).get(wq).v128Load(16).set(v[1]);
    for (let m = 0; m < half; m++) {
      if (bits === 2 && m === 4) for (let q = 0; q < 2; q++) f.get(v[q]).i32(8).i16x8ShrU().set(v[q]);
      for (let q = 0; q < 2; q++) { field16(f, v[q], masks, bits, m); f.set(fv[q]); }
      for (let r = 0; r < T; r++) {
        f.get(xb).v128Load32Splat((r0 + r) * xRow + m * 4).set(xs);
        for (let q = 0; q < 2; q++) f.get(fv[q]).get(xs).i32x4DotI16x8S().get(acc[2 * r + q]).i32x4Add().set(acc[2 * r + q]);
      }
    }
    f.get(wq).i32(32).add().set(wq);
    f.get(xb).i32(R * xRow).add().set(xb);
    f.get(c).i32(1).sub().tee(c).brIf(0);
    f.end();
    for (let r = 0; r < T; r++) {
      for (let q = 0; q < 2; q++) {
        f.get(scratch);
        f.get(acc[2 * r + q]).f32x4ConvertI32x4S().get(dxp).v128Load32Splat((r0 + r) * 4).f32x4Mul()
          .get(scratch).v128Load(gOff(r0 + r, q)).f32x4Add();
        f.v128Store(gOff(r0 + r, q));
      }
    }
    r0 += T;
  }
  f.get(wp).get(cpb).i32(32).mul().add().set(wp);
  f.get(xp).get(cpb).i32(R * xRow).mul().add().set(xp);
  f.get(dxp).i32(R * 4).add().set(dxp);
  f.get(b).i32(1).sub().tee(b).brIf(0);
  f.end();
  for (let r = 0; r < R; r++) {
    f.get(sxp).v128Load32Splat(r * 4).set(d);
    for (let q = 0; q < 2; q++) {
      f.get(scratch);
      f.get(scratch).v128Load(gOff(r, q)).get(sp).v128Load(q * 16).f32x4Mul().get(scratch).v128Load(fOff(r, q)).f32x4Add()
        .get(zp).v128Load(q * 16).get(d).f32x4Mul().f32x4Add();
      f.v128Store(fOff(r, q));
    }
  }
  f.get(sp).i32(32).add().set(sp).get(zp).i32(32).add().set(zp);
  f.get(sxp).i32(R * 4).add().set(sxp);
  f.get(g).i32(1).sub().tee(g).brIf(0);
  f.end();
  for (let r = 0; r < R; r++) {
    f.get(out).get(nb).i32(32).mul().add();
    if (r > 0) f.get(outStride).i32(r).mul().add();
    f.set(op);
    for (let q = 0; q < 2; q++) {
      f.get(scratch).v128Load(fOff(r, q)).set(o);
      f.get(bias).if();
      f.get(o).get(bias).get(nb).i32(32).mul().add().v128Load(q * 16).f32x4Add().set(o);
      f.end();
      f.get(accumulate).if();
      f.get(o).get(op).v128Load(q * 16).f32x4Add().set(o);
      f.end();
      f.get(op).get(o).v128Store(q * 16);
    }
  }
  f.get(nb).i32(1).add().set(nb);
  f.br(0);
  f.end().end();
  return f;
}
