import { GEMVQ_ROWS, gemvqRows } from './gemvqRows.js';
import { field16, Q8_MASKS } from './q8Fields.js';
import { assembleModule, FnBuilder, I32, V128, type WasmInstance } from './wasmAsm.js';

/**
 * The WebAssembly SIMD kernels of the fast CPU backend, generated as code (see wasmAsm.ts).
 * All pointers and strides are byte offsets into the shared memory; outputs are computed in
 * blocks of 8 columns (two f32x4 lanes groups), so weights are repacked block-major at upload:
 *
 *   dense  W  [N/8][K][8] f32            (block nb at w + nb·wStride)
 *   gptq   Q  [N/8][K/perWord][8] u32     (chunk of perWord = 32/bits inputs × 8 columns)
 *          S, NZ [N/8][G][8] f32          (scale and −zero·scale of each group and column)
 *
 * Within a chunk the word of one column holds its perWord inputs "pair-interleaved": the low
 * 16 bits hold inputs 0, 2, 4, … and the high 16 bits inputs 1, 3, 5, … (field j at bit j·bits
 * is input `fieldInput(bits, j)`). Read as i16x8, the 4 words of 4 columns are 8 i16 lanes where
 * lanes 2i and 2i+1 belong to column i — the pairs `i32x4.dot_i16x8_s` sums — so one masked
 * field of the vector times a splat of the x pair (x[2m], x[2m+1]) gives 4 columns' partial dots.
 *
 * gemm:   out[t, 8nb..8nb+8) (+)= Σ_k x[t, k] · W[nb][k][:] (+ bias), t in 0..rows, nb in nb0..nb1;
 *         4-row × 8-column register tiles, then single rows for the remainder.
 * gemvN:  f32 GEMV: out[8nb..] (+)= Σ_g ( S[g] · Σ_{k∈g} x[k] · q[k] + NZ[g] · Σ_{k∈g} x[k] ) (+ bias)
 *         — the dequantization S·(q − z) folded in per group, so the inner loop is mask,
 *         convert, multiply, add (x comes pre-scaled by 2^(−bits·j) for field j, which makes
 *         the shift unnecessary and changes no rounding); sumx[g] = Σ_{k∈g} x[k] precomputed.
 * gemvqN: int8-activation GEMV (llama.cpp's Q8 idea): x arrives quantized per block of XB ≤ 128
 *         inputs, x ≈ dx[b]·xq (|xq| ≤ 127), stored as i16 pre-multiplied by XMUL[bits][field] so
 *         that every masked (not shifted) field times its x pair is exactly F·q·xq (F = XSCALE);
 *         per block Σ q·xq accumulates exactly in i32 (|F·q·xq| ≤ 487680, ·128 < 2^31), then
 *         out (+)= Σ_g ( S[g] · Σ_{b∈g} dx[b]/F · Σ_{k∈b} F·q·xq + NZ[g] · sumx[g] ),
 *         sumx[g] = Σ_{b∈g} dx[b] Σ_{k∈b} xq[k] (the quantized x, so the zero cancels exactly).
 *         Per 16 bytes of 4-bit weights: 1 load, 3 and + 1 shift, 4 dot, 4 add (+ 2 x splats).
 * gemvqN_R: gemvqN for R = 2..8 rows sharing each weight load and unpack (gemvqRows.ts).
 * dequantN: one block of Q into f32 [K][8] scratch for gemm (prefill: dequantize once per call,
 *         reuse across all rows).
 */

export type QuantBits = 2 | 4 | 8;
export const QUANT_BITS: readonly QuantBits[] = [2, 4, 8];

/** The input (within its chunk of 32/bits) that field j of a repacked word holds. */
export function fieldInput(bits: QuantBits, j: number): number {
  const half = 16 / bits;
  return j < half ? 2 * j : 2 * (j - half) + 1;
}

/** gemvq: every product is XSCALE[bits] · q · xq exactly. */
export const XSCALE: Readonly<Record<QuantBits, number>> = { 2: 256, 4: 256, 8: 1 };
/** gemvq: x of input 2m+e of a chunk is stored as xq · XMUL[bits][m]. */
export const XMUL: Readonly<Record<QuantBits, readonly number[]>> = {
  2: [256, 64, 16, 4, 256, 64, 16, 4],
  4: [256, 16, 1, 256],
  8: [1, 1],
};
/** Largest x quantization block of the int8 GEMV (keeps the i32 block sums exact). */
export const MAX_XBLOCK = 128;

export interface KernelExports {
  gemm(x: number, xStride: number, w: number, wStride: number, out: number, outStride: number, bias: number,
    k: number, nb0: number, nb1: number, rows: number, accumulate: number): void;
  gemv(bits: QuantBits): (x: number, w: number, scales: number, negzs: number, sumx: number, out: number,
    groups: number, rowsPerGroup: number, nb0: number, nb1: number, accumulate: number, bias: number,
    wBlockStride: number, sBlockStride: number) => void;
  gemvq(bits: QuantBits): (x: number, dx: number, sumx: number, w: number, scales: number, negzs: number, out: number,
    groups: number, blocksPerGroup: number, chunksPerBlock: number, nb0: number, nb1: number, accumulate: number,
    bias: number, wBlockStride: number, sBlockStride: number) => void;
  /** the int8 GEMV for `rows` (MIN_GEMVQ_ROWS..MAX_GEMVQ_ROWS) interleaved rows, see gemvqRows.ts */
  gemvqRows(bits: QuantBits, rows: number): (x: number, dx: number, sumx: number, w: number, scales: number, negzs: number,
    out: number, outStride: number, groups: number, blocksPerGroup: number, chunksPerBlock: number, nb0: number, nb1: number,
    accumulate: number, bias: number, wBlockStride: number, sBlockStride: number, scratch: number) => void;
  dequant(bits: QuantBits): (w: number, scales: number, negzs: number, scratch: number, groups: number, rowsPerGroup: number) => void;
  read(ptr: number, bytes: number, sink: number): void;
}

function gemm(): FnBuilder {
  const f = new FnBuilder('gemm', [I32, I32, I32, I32, I32, I32, I32, I32, I32, I32, I32, I32]);
  const [x, xStride, w, wStride, out, outStride, bias, K, nb0, nb1, rows, accumulate] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
  const nb = f.local(I32), t = f.local(I32), wp = f.local(I32), k = f.local(I32), op = f.local(I32), oCol = f.local(I32);
  const xp = [f.local(I32), f.local(I32), f.local(I32), f.local(I32)];
  const acc = Array.from({ length: 8 }, () => f.local(V128));
  const w0 = f.local(V128), w1 = f.local(V128), xs = f.local(V128), b0 = f.local(V128), b1 = f.local(V128);

  const micro = (R: number): void => {
    for (let r = 0; r < R; r++) {
      f.get(x).get(t).i32(r).add().get(xStride).mul().add().set(xp[r]);
      f.v128Zero().set(acc[2 * r]).v128Zero().set(acc[2 * r + 1]);
    }
    f.get(w).get(nb).get(wStride).mul().add().set(wp);
    f.get(K).set(k);
    f.loop();
    f.get(wp).v128Load(0).set(w0).get(wp).v128Load(16).set(w1);
    for (let r = 0; r < R; r++) {
      f.get(xp[r]).v128Load32Splat(0).set(xs);
      f.get(acc[2 * r]).get(xs).get(w0).f32x4Mul().f32x4Add().set(acc[2 * r]);
      f.get(acc[2 * r + 1]).get(xs).get(w1).f32x4Mul().f32x4Add().set(acc[2 * r + 1]);
      f.get(xp[r]).i32(4).add().set(xp[r]);
    }
    f.get(wp).i32(32).add().set(wp);
    f.get(k).i32(1).sub().tee(k).brIf(0);
    f.end();
    for (let r = 0; r < R; r++) {
      f.get(oCol).get(t).i32(r).add().get(outStride).mul().add().set(op);
      f.get(acc[2 * r]).get(b0).f32x4Add().set(acc[2 * r]);
      f.get(acc[2 * r + 1]).get(b1).f32x4Add().set(acc[2 * r + 1]);
      f.get(accumulate).if();
      f.get(acc[2 * r]).get(op).v128Load(0).f32x4Add().set(acc[2 * r]);
      f.get(acc[2 * r + 1]).get(op).v128Load(16).f32x4Add().set(acc[2 * r + 1]);
      f.end();
      f.get(op).get(acc[2 * r]).v128Store(0);
      f.get(op).get(acc[2 * r + 1]).v128Store(16);
    }
  };

  f.get(nb0).set(nb);
  f.block().loop();
  f.get(nb).get(nb1).geU().brIf(1);
  f.get(out).get(nb).i32(32).mul().add().set(oCol);
  f.v128Zero().set(b0).v128Zero().set(b1);
  f.get(bias).if();
  f.get(bias).get(nb).i32(32).mul().add().v128Load(0).set(b0);
  f.get(bias).get(nb).i32(32).mul().add().v128Load(16).set(b1);
  f.end();
  f.i32(0).set(t);
  // 4-row tiles while t + 4 <= rows
  f.block().loop();
  f.get(rows).get(t).i32(4).add().ltU().brIf(1);
  micro(4);
  f.get(t).i32(4).add().set(t);
  f.br(0);
  f.end().end();
  // remaining rows one at a time
  f.block().loop();
  f.get(t).get(rows).geU().brIf(1);
  micro(1);
  f.get(t).i32(1).add().set(t);
  f.br(0);
  f.end().end();
  f.get(nb).i32(1).add().set(nb);
  f.br(0);
  f.end().end();
  return f;
}

/** Pushes the f32x4 of quantized values j of the 4 words in `v` (converted to float). */
function extract(f: FnBuilder, v: number, mask: number, bits: number, j: number): void {
  f.get(v);
  if (j > 0) f.i32(j * bits).i32x4ShrU();
  if ((j + 1) * bits < 32) f.get(mask).v128And();
  f.f32x4ConvertI32x4U();
}

function gemv(bits: QuantBits): FnBuilder {
  const perWord = 32 / bits;
  const f = new FnBuilder(`gemv${bits}`, [I32, I32, I32, I32, I32, I32, I32, I32, I32, I32, I32, I32, I32, I32]);
  const [x, w, scales, negzs, sumx, out, groups, rpg, nb0, nb1, accumulate, bias, wBlockStride, sBlockStride] =
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13];
  const nb = f.local(I32), wp = f.local(I32), sp = f.local(I32), zp = f.local(I32), xp = f.local(I32), sxp = f.local(I32);
  const g = f.local(I32), pr = f.local(I32), op = f.local(I32);
  const accA = f.local(V128), accB = f.local(V128), wa = f.local(V128), wb = f.local(V128), xs = f.local(V128);
  const ga = [f.local(V128), f.local(V128)], gb = [f.local(V128), f.local(V128)];
  const sx = f.local(V128);
  // value j stays in place under its mask: (word & (m << j·bits)) = q · 2^(j·bits) exactly, and
  // x arrives pre-scaled by 2^(−j·bits), so no shift is needed
  const masks = Array.from({ length: perWord }, () => f.local(V128));
  masks.forEach((m, j) => f.i32((((1 << bits) - 1) << (j * bits)) | 0).i32x4Splat().set(m));
  f.get(nb0).set(nb);
  f.block().loop();
  f.get(nb).get(nb1).geU().brIf(1);
  f.get(w).get(nb).get(wBlockStride).mul().add().set(wp);
  f.get(scales).get(nb).get(sBlockStride).mul().add().set(sp);
  f.get(negzs).get(nb).get(sBlockStride).mul().add().set(zp);
  f.get(x).set(xp).get(sumx).set(sxp);
  f.v128Zero().set(accA).v128Zero().set(accB);
  f.get(groups).set(g);
  f.loop();
  for (const l of [...ga, ...gb]) f.v128Zero().set(l);
  f.get(rpg).set(pr);
  f.loop();
  f.get(wp).v128Load(0).set(wa).get(wp).v128Load(16).set(wb);
  for (let j = 0; j < perWord; j++) {
    f.get(xp).v128Load32Splat(j * 4).set(xs);
    const a = ga[j & 1], b = gb[j & 1];
    f.get(wa).get(masks[j]).v128And().f32x4ConvertI32x4U().get(xs).f32x4Mul().get(a).f32x4Add().set(a);
    f.get(wb).get(masks[j]).v128And().f32x4ConvertI32x4U().get(xs).f32x4Mul().get(b).f32x4Add().set(b);
  }
  f.get(wp).i32(32).add().set(wp);
  f.get(xp).i32(perWord * 4).add().set(xp);
  f.get(pr).i32(1).sub().tee(pr).brIf(0);
  f.end();
  f.get(sxp).v128Load32Splat(0).set(sx);
  f.get(ga[0]).get(ga[1]).f32x4Add().get(sp).v128Load(0).f32x4Mul().get(accA).f32x4Add()
    .get(zp).v128Load(0).get(sx).f32x4Mul().f32x4Add().set(accA);
  f.get(gb[0]).get(gb[1]).f32x4Add().get(sp).v128Load(16).f32x4Mul().get(accB).f32x4Add()
    .get(zp).v128Load(16).get(sx).f32x4Mul().f32x4Add().set(accB);
  f.get(sp).i32(32).add().set(sp).get(zp).i32(32).add().set(zp).get(sxp).i32(4).add().set(sxp);
  f.get(g).i32(1).sub().tee(g).brIf(0);
  f.end();
  f.get(out).get(nb).i32(32).mul().add().set(op);
  f.get(bias).if();
  f.get(accA).get(bias).get(nb).i32(32).mul().add().v128Load(0).f32x4Add().set(accA);
  f.get(accB).get(bias).get(nb).i32(32).mul().add().v128Load(16).f32x4Add().set(accB);
  f.end();
  f.get(accumulate).if();
  f.get(accA).get(op).v128Load(0).f32x4Add().set(accA);
  f.get(accB).get(op).v128Load(16).f32x4Add().set(accB);
  f.end();
  f.get(op).get(accA).v128Store(0).get(op).get(accB).v128Store(16);
  f.get(nb).i32(1).add().set(nb);
  f.br(0);
  f.end().end();
  return f;
}

/**
 * gemvq: blocks nb0..nb1, one 8-column block (2 column quads) per pass. `pass(2)` (16 columns, each
 * x splat feeding 4 dot products) is kept generic but unused: with 4 weight vectors, 4 accumulators,
 * 4 x splats (hoisted by TurboFan) and 3 masks it spills V8's 16 xmm registers and measured 10–20%
 * slower here. Every column's arithmetic is the same sequence wherever its block falls, so the
 * split across threads does not change any result.
 */
function gemvq(bits: QuantBits): FnBuilder {
  const half = 16 / bits; // fields per i16 lane
  const chunk = 2 * half; // inputs per chunk
  const f = new FnBuilder(`gemvq${bits}`, Array.from({ length: 16 }, () => I32));
  const [x, dx, sumx, w, scales, negzs, out, groups, bpg, cpb, nb0, nb1, accumulate, bias, wBlockStride, sBlockStride] =
    Array.from({ length: 16 }, (_, i) => i);
  const nb = f.local(I32), xp = f.local(I32), dxp = f.local(I32);
  const sxp = f.local(I32), g = f.local(I32), b = f.local(I32), c = f.local(I32), op = f.local(I32);
  const wp = [f.local(I32), f.local(I32)], sp = [f.local(I32), f.local(I32)], zp = [f.local(I32), f.local(I32)];
  const quads = (n: number): number[] => Array.from({ length: n }, () => f.local(V128));
  const acc = quads(4), v = quads(4), gacc = quads(4), facc = quads(4);
  const xs = f.local(V128), d = f.local(V128);
  const masks = Q8_MASKS[bits].map((mv) => { const l = f.local(V128); f.i32(mv).i16x8Splat().set(l); return l; });

  /** blocks nb .. nb+R−1; quad q is block q >> 1, half q & 1 */
  const pass = (R: number): void => {
    const Q = 2 * R;
    for (let r = 0; r < R; r++) {
      f.get(w).get(nb).i32(r).add().get(wBlockStride).mul().add().set(wp[r]);
      f.get(scales).get(nb).i32(r).add().get(sBlockStride).mul().add().set(sp[r]);
      f.get(negzs).get(nb).i32(r).add().get(sBlockStride).mul().add().set(zp[r]);
    }
    f.get(x).set(xp).get(dx).set(dxp).get(sumx).set(sxp);
    for (let q = 0; q < Q; q++) f.v128Zero().set(facc[q]);
    f.get(groups).set(g);
    f.loop(); // groups
    for (let q = 0; q < Q; q++) f.v128Zero().set(gacc[q]);
    f.get(bpg).set(b);
    f.loop(); // x blocks of the group
    for (let q = 0; q < Q; q++) f.v128Zero().set(acc[q]);
    f.get(cpb).set(c);
    f.loop(); // chunks of the x block
    for (let q = 0; q < Q; q++) f.get(wp[q >> 1]).v128Load((q & 1) * 16).set(v[q]);
    for (let m = 0; m < half; m++) {
      if (bits === 2 && m === 4) for (let q = 0; q < Q; q++) f.get(v[q]).i32(8).i16x8ShrU().set(v[q]);
      f.get(xp).v128Load32Splat(m * 4).set(xs);
      for (let q = 0; q < Q; q++) {
        field16(f, v[q], masks, bits, m);
        f.get(xs).i32x4DotI16x8S().get(acc[q]).i32x4Add().set(acc[q]);
      }
    }
    for (let r = 0; r < R; r++) f.get(wp[r]).i32(32).add().set(wp[r]);
    f.get(xp).i32(chunk * 2).add().set(xp);
    f.get(c).i32(1).sub().tee(c).brIf(0);
    f.end();
    f.get(dxp).v128Load32Splat(0).set(d);
    for (let q = 0; q < Q; q++) f.get(acc[q]).f32x4ConvertI32x4S().get(d).f32x4Mul().get(gacc[q]).f32x4Add().set(gacc[q]);
    f.get(dxp).i32(4).add().set(dxp);
    f.get(b).i32(1).sub().tee(b).brIf(0);
    f.end();
    f.get(sxp).v128Load32Splat(0).set(d);
    for (let q = 0; q < Q; q++) {
      const r = q >> 1, off = (q & 1) * 16;
      f.get(gacc[q]).get(sp[r]).v128Load(off).f32x4Mul().get(facc[q]).f32x4Add()
        .get(zp[r]).v128Load(off).get(d).f32x4Mul().f32x4Add().set(facc[q]);
    }
    for (let r = 0; r < R; r++) f.get(sp[r]).i32(32).add().set(sp[r]).get(zp[r]).i32(32).add().set(zp[r]);
    f.get(sxp).i32(4).add().set(sxp);
    f.get(g).i32(1).sub().tee(g).brIf(0);
    f.end();
    f.get(out).get(nb).i32(32).mul().add().set(op);
    f.get(bias).if();
    for (let q = 0; q < Q; q++) f.get(facc[q]).get(bias).get(nb).i32(32).mul().add().v128Load(q * 16).f32x4Add().set(facc[q]);
    f.end();
    f.get(accumulate).if();
    for (let q = 0; q < Q; q++) f.get(facc[q]).get(op).v128Load(q * 16).f32x4Add().set(facc[q]);
    f.end();
    for (let q = 0; q < Q; q++) f.get(op).get(facc[q]).v128Store(q * 16);
    f.get(nb).i32(R).add().set(nb);
  };

  f.get(nb0).set(nb);
  f.block().loop();
  f.get(nb).get(nb1).geU().brIf(1);
  pass(1);
  f.br(0);
  f.end().end();
  return f;
}

function dequant(bits: QuantBits): FnBuilder {
  const perWord = 32 / bits;
  const f = new FnBuilder(`dequant${bits}`, [I32, I32, I32, I32, I32, I32]);
  const [w, scales, negzs, scratch, groups, rpg] = [0, 1, 2, 3, 4, 5];
  const g = f.local(I32), pr = f.local(I32);
  const wa = f.local(V128), wb = f.local(V128), s0 = f.local(V128), s1 = f.local(V128), z0 = f.local(V128), z1 = f.local(V128);
  const mask = f.local(V128);
  f.i32((1 << bits) - 1).i32x4Splat().set(mask);
  f.get(groups).set(g);
  f.loop();
  f.get(scales).v128Load(0).set(s0).get(scales).v128Load(16).set(s1);
  f.get(negzs).v128Load(0).set(z0).get(negzs).v128Load(16).set(z1);
  f.get(rpg).set(pr);
  f.loop();
  f.get(w).v128Load(0).set(wa).get(w).v128Load(16).set(wb);
  for (let j = 0; j < perWord; j++) {
    f.get(scratch);
    extract(f, wa, mask, bits, j); f.get(s0).f32x4Mul().get(z0).f32x4Add();
    f.v128Store(fieldInput(bits, j) * 32);
    f.get(scratch);
    extract(f, wb, mask, bits, j); f.get(s1).f32x4Mul().get(z1).f32x4Add();
    f.v128Store(fieldInput(bits, j) * 32 + 16);
  }
  f.get(w).i32(32).add().set(w);
  f.get(scratch).i32(perWord * 32).add().set(scratch);
  f.get(pr).i32(1).sub().tee(pr).brIf(0);
  f.end();
  f.get(scales).i32(32).add().set(scales).get(negzs).i32(32).add().set(negzs);
  f.get(g).i32(1).sub().tee(g).brIf(0);
  f.end();
  return f;
}

/** read(ptr, bytes, sink): sums `bytes` (a multiple of 64) as f32x4 — the bandwidth probe of the bench. */
function read(): FnBuilder {
  const f = new FnBuilder('read', [I32, I32, I32]);
  const [ptr, bytes, sink] = [0, 1, 2];
  const end = f.local(I32);
  const a = [f.local(V128), f.local(V128), f.local(V128), f.local(V128)];
  f.get(ptr).get(bytes).add().set(end);
  f.block().loop();
  f.get(ptr).get(end).geU().brIf(1);
  for (let i = 0; i < 4; i++) f.get(a[i]).get(ptr).v128Load(i * 16).f32x4Add().set(a[i]);
  f.get(ptr).i32(64).add().set(ptr);
  f.br(0);
  f.end().end();
  f.get(sink).get(a[0]).get(a[1]).f32x4Add().get(a[2]).get(a[3]).f32x4Add().f32x4Add().v128Store(0);
  return f;
}

export const MAX_PAGES = 65536;

/** The kernel module's bytes (shared memory import `env.memory`, up to 4 GiB). */
export function kernelModuleBytes(): Uint8Array {
  const rows = QUANT_BITS.flatMap((bits) => GEMVQ_ROWS.map((r) => gemvqRows(bits, r)));
  return assembleModule([gemm(), ...QUANT_BITS.map(gemv), ...QUANT_BITS.map(gemvq), ...rows, ...QUANT_BITS.map(dequant), read()], 1, MAX_PAGES);
}

type Fn = (...args: number[]) => void;

export function kernelExports(instance: WasmInstance): KernelExports {
  const e = instance.exports as Record<string, Fn>;
  return {
    gemm: e.gemm,
    gemv: (bits) => e[`gemv${bits}`],
    gemvq: (bits) => e[`gemvq${bits}`],
    gemvqRows: (bits, rows) => e[`gemvq${bits}_${rows}`],
    dequant: (bits) => e[`dequant${bits}`],
    read: e.read,
  };
}
