/**
 * The Hopper prefill GEMM of launchLinear (q4 layout, rows ≥ WGMMA_MIN_ROWS on sm_90): y (+)= xh Wᵀ run
 * in slices of W's rows (y's columns). Per slice of Ns columns starting at n0:
 *   dequant_q4_tile  W[n0 .. n0+Ns) → the weight scratch as fp16 [Ns, K] (K contiguous)
 *   gemm_wgmma_256   y[:, n0 .. n0+Ns) (+)= xh · scratchᵀ (TMA map of the scratch; y offset by n0, rows N apart),
 *   or gemm_wgmma_160 (160-wide tiles) where wgmmaTileCols models it faster
 * (kernels: gemm_wgmma.cu). The scratch then holds one slice (≤ sliceBytes) instead of the whole matrix
 * (141 MB for 13B's MLP); each slice is planned to keep the persistent GEMM's waves as full as unsliced.
 */
import { TensorMapSwizzle, type DevicePtr, type Driver } from './driver.js';
import { i32, ptr } from './kernelArgs.js';
import type { CudaGptq } from './linearUpload.js';
import type { RsBuild } from './rsLinear.js';
import type { KernelModule } from './module.js';

export interface WgmmaOptions {
  /** a device buffer of at least `bytes` (one slice's fp16 [Ns, K] weights), other than the x scratch; kept */
  readonly weightScratch: (bytes: number) => DevicePtr;
  /** blocks of the persistent grid (one per SM: GEMM_WGMMA_SHARED allows no second) */
  readonly smCount: number;
  /** the most bytes of fp16 weights one slice may take (the scratch's size cap; one 256-row tile at least) */
  readonly sliceBytes: () => number;
  /**
   * smCount zeroed ints for the stream-K tail (gemm_wgmma.cuh WgWork: the last partial wave of tiles is
   * split along K so no SM idles), or null: whole tiles only (CudaBackend.wgmmaStreamK)
   */
  readonly tileFlags: () => DevicePtr | null;
  /** tile width of plain linears: 0 lets wgmmaTileCols choose between 256 and 160, else that width (CudaBackend.wgmmaTileCols) */
  readonly tileCols: () => WgTileCols;
  /**
   * whether a GEMM of this many rows over wTiles tiles of W (rsPlainTiles, or gate/up's outputs / RS_GATE_UP_OUTPUTS)
   * runs the register-A kernel instead (rsLinear.ts; CudaBackend.rsMinRows, rsMaxRows, rsMinFill). nk: a plain
   * launch's K slices, whose fill then counts the K ranges it would split into (rsTakes, CudaBackend.rsSplitFill)
   */
  readonly takesRs: (rows: number, wTiles: number, nk?: number) => boolean;
  /** rsSplits's minFill for plain register-A launches (CudaBackend.rsSplitFill) */
  readonly rsSplitFill: () => number;
  /** whether the register-A gate/up launch loads gate and up through one 3-D map each (CudaBackend.rsPaired) */
  readonly rsPaired: () => boolean;
  /** whether register-A launches go out with programmatic dependent launch (CudaBackend.rsPdl) */
  readonly rsPdl: () => boolean;
  /** which build of it (rsBuildFor with CudaBackend.rsSmallRows) */
  readonly rsBuild: (rows: number) => RsBuild;
}

/** gemm_wgmma_256's or gemm_wgmma_160's tile width, or 0: whichever wgmmaTileCols models faster */
export type WgTileCols = 0 | 160 | 256;

/** gemm_wgmma_256's tiles (gemm_wgmma.cuh: BM × BN, K slices of BK); gemm_wgmma_160's are WG_BN_NARROW wide */
export const WG_BM = 128, WG_BN = 256, WG_BK = 64, WG_BN_NARROW = 160;
/** dynamic shared memory of gemm_wgmma_256 (Cfg<256, 4, false>::SMEM: 4 stages of 128×64 x and 256×64 W fp16 + 1 KiB alignment) */
export const GEMM_WGMMA_SHARED = 4 * (WG_BM + WG_BN) * WG_BK * 2 + 1024;
/** dynamic shared memory of gemm_wgmma_160 (Cfg<160, 5, false>::SMEM) */
export const GEMM_WGMMA_160_SHARED = 5 * (WG_BM + WG_BN_NARROW) * WG_BK * 2 + 1024;
/** dequant_q4_tile's tile (gemm_wgmma.cuh DQ_TN columns × DQ_TR packed rows = 8·DQ_TR k) and block */
const DQ_TN = 64, DQ_TK = 8 * 32, DQ_THREADS = 256;

/**
 * Default slice cap. 13B's largest slices then take 84 MB (gate/up: 2 slices of 32 tiles of 256 rows × K
 * 5120) and 57–78 MB (down, K 13824) instead of 141 MB for the whole matrix, with as many GEMM waves as
 * unsliced at 1024–2048 rows (132 SMs). H200 lab (gemm-lab.sh, 13B layer at 2048 rows): slices cost
 * 6–12 µs each over one launch pair; a 32 MiB cap (slices that could stay in the 50–60 MB L2) leaves too few
 * tiles per slice for the SMs (down: 4 tiles × 16 row tiles), 2.62 vs 2.17 ms per layer.
 */
export const WG_SLICE_BYTES = 80 * 1024 * 1024;

/**
 * Cost model of the slice planner, in ns: a 128 × 256 tile takes TILE_NS_PER_K · K (650 TFLOP/s over 132
 * SMs: 2·128·256 flop per k at 4.9 TFLOP/s per SM), and each slice adds SLICE_NS (two more kernel
 * boundaries, the GEMM's pipeline fill and its last wave's ragged end: 6–12 µs in the H200 lab).
 */
const TILE_NS_PER_K = 13.3, SLICE_NS = 10000;
/**
 * Whether a launch of `tiles` splits them along K (stream-K, gemm_wgmma.cuh WgWork): only a lone partial
 * wave of at most half the SMs. H200, 13B at 512 rows: down_proj's slices of 36 and 44 tiles took 114 and
 * 94 µs split against 148 whole; 80–128 tiles were 6–15% slower split, and so were 2048-row launches
 * (2 waves and a tail). A partial wave's few blocks run faster per tile than a full wave's (not for want
 * of L2 bandwidth: 2-block clusters sharing W tiles through multicast measured the same as single
 * blocks; bench/cudaNotes.md), so splitting gains less than the wave count says, while it adds the partial
 * sums' stores. (So the slice planner below counts whole waves and does not plan for it.)
 */
export function wgmmaStreamK(tiles: number, smCount: number): boolean {
  return tiles <= smCount / 2;
}

/**
 * Columns per slice (a multiple of bn, or n when one slice takes all) for a GEMM of `rows` × n × k in tiles
 * bn wide, and that plan's modeled time in ns: the width of at most `capBytes` of fp16 weights (at least one
 * tile) that minimizes Σ over slices of waves (⌈tiles / smCount⌉, the persistent grid runs one tile per SM at
 * a time) of a tile's time (∝ bn) plus a per-slice cost; ties go to the wider slice (fewer launches).
 */
export function wgmmaSlicePlan(rows: number, n: number, k: number, smCount: number, capBytes: number, bn: number = WG_BN): { readonly cols: number; readonly costNs: number } {
  const mtiles = Math.ceil(rows / WG_BM), ntiles = Math.ceil(n / bn);
  const most = Math.min(ntiles, Math.max(1, Math.floor(capBytes / (bn * k * 2))));
  const tileNs = TILE_NS_PER_K * k * (bn / WG_BN);
  let best = most, bestCost = Infinity;
  for (let s = most; s >= 1; s--) {
    const full = Math.floor(ntiles / s), rest = ntiles - full * s;
    const waves = full * Math.ceil((mtiles * s) / smCount) + (rest > 0 ? Math.ceil((mtiles * rest) / smCount) : 0);
    const cost = waves * tileNs + (full + (rest > 0 ? 1 : 0)) * SLICE_NS;
    if (cost < bestCost) {
      best = s;
      bestCost = cost;
    }
  }
  return { cols: Math.min(n, best * bn), costNs: bestCost };
}

/**
 * The tile width of a plain linear's GEMM (`forced`, or with 0 the faster of 256 and 160 in wgmmaSlicePlan's
 * wave model, ties to 256) and its slice width. 160-wide tiles fill the waves where 256-wide ones leave a
 * wave part-empty: 13B at 2048 rows, N 5120: 320 tiles of 256 are 2.4 waves on 132 SMs, 512 of 160 are 3.9.
 */
export function wgmmaTileCols(rows: number, n: number, k: number, smCount: number, capBytes: number, forced: WgTileCols): { readonly bn: number; readonly cols: number } {
  if (forced !== 0) return { bn: forced, cols: wgmmaSlicePlan(rows, n, k, smCount, capBytes, forced).cols };
  const wide = wgmmaSlicePlan(rows, n, k, smCount, capBytes, WG_BN), narrow = wgmmaSlicePlan(rows, n, k, smCount, capBytes, WG_BN_NARROW);
  return narrow.costNs < wide.costNs ? { bn: WG_BN_NARROW, cols: narrow.cols } : { bn: WG_BN, cols: wide.cols };
}

/** One linear's slicing and its weight scratch (taken before any launch: growing the scratch synchronizes). */
export interface WgmmaPlan {
  /** tile width: gemm_wgmma_256 or gemm_wgmma_160 */
  readonly bn: number;
  readonly cols: number;
  readonly scratch: DevicePtr;
  readonly smCount: number;
  readonly tileFlags: DevicePtr | null;
}

/** `pairs`: gate/up fused with SwiGLU (256-wide tiles only: each holds 128 gate and 128 up rows) */
export function planWgmma(wg: WgmmaOptions, rows: number, n: number, k: number, pairs = false): WgmmaPlan {
  const { bn, cols } = wgmmaTileCols(rows, n, k, wg.smCount, wg.sliceBytes(), pairs ? WG_BN : wg.tileCols());
  return { bn, cols, scratch: wg.weightScratch(cols * k * 2), smCount: wg.smCount, tileFlags: wg.tileFlags() };
}

function offset(p: DevicePtr, bytes: number): DevicePtr {
  return (p + BigInt(bytes)) as DevicePtr;
}

/** The GEMM's tensor maps: xh [rows, K] (box 128 × 64) and the scratch's first `wrows` W rows (box bn × 64; the full slice's map made once). */
function tensorMaps(cu: Driver, plan: WgmmaPlan, xh: DevicePtr, K: number, rows: number): { readonly a: Buffer; readonly b: (wrows: number) => Buffer } {
  const map = (base: DevicePtr, outer: number, boxOuter: number): Buffer =>
    cu.encodeTensorMap2d({ base, inner: K, outer, rowBytes: K * 2, boxInner: WG_BK, boxOuter, swizzle: TensorMapSwizzle.B128 });
  const a = map(xh, rows, WG_BM), full = map(plan.scratch, plan.cols, plan.bn);
  return { a, b: (wrows) => (wrows === plan.cols ? full : map(plan.scratch, wrows, plan.bn)) };
}

/**
 * y [rows, N] f32 (+)= xh [rows, K] fp16 · Wᵀ, slice by slice (xh: x_to_half's copy of x, already launched).
 * Needs K % 64 == 0, N % 8 == 0, groupSize % 32 == 0 (launchLinear's branch checks them).
 */
export function launchWgmmaSlices(cu: Driver, kernels: KernelModule, plan: WgmmaPlan, w: CudaGptq, y: DevicePtr, xh: DevicePtr,
  rows: number, accumulate: boolean): void {
  const K = w.inFeatures, N = w.outFeatures, gs = w.groupSize;
  const tm = tensorMaps(cu, plan, xh, K, rows);
  for (let n0 = 0; n0 < N; n0 += plan.cols) {
    const ns = Math.min(plan.cols, N - n0);
    dequantSlice(kernels, plan.scratch, w, n0, ns, 0, 0);
    const tiles = Math.ceil(rows / WG_BM) * Math.ceil(ns / plan.bn);
    // a lone small partial wave is split along K so that every SM takes a share of it
    const split = plan.tileFlags !== null && wgmmaStreamK(tiles, plan.smCount);
    const narrow = plan.bn === WG_BN_NARROW;
    kernels.launch(narrow ? 'gemm_wgmma_160' : 'gemm_wgmma_256', { x: split ? plan.smCount : Math.min(tiles, plan.smCount) }, { x: 384 },
      [ptr(offset(y, n0 * 4)), i32(rows), i32(ns), i32(N), i32(K), i32(accumulate ? 1 : 0), i32(gs), tm.a, tm.b(ns),
        ptr(split ? plan.tileFlags : null), ptr(null), i32(0)],
      narrow ? GEMM_WGMMA_160_SHARED : GEMM_WGMMA_SHARED);
  }
}

/**
 * dequant_q4_tile (or, for the q8 layout, dequant_q8_tile) of columns n0 .. n0+ns of w into the scratch
 * (pairRows, rowOff: gemm_wgmma.cuh dequant_q4_tile_body; q4 only)
 */
function dequantSlice(kernels: KernelModule, scratch: DevicePtr, w: CudaGptq, n0: number, ns: number, pairRows: number, rowOff: number): void {
  const K = w.inFeatures;
  const grid = { x: Math.ceil(ns / DQ_TN), y: Math.ceil(K / DQ_TK) };
  if (w.layout === 'q8') {
    if (pairRows !== 0) throw new RangeError('the fused gate/up GEMM takes q4-layout weights only');
    kernels.launch('dequant_q8_tile', grid, { x: DQ_THREADS },
      [ptr(scratch), ptr(offset(w.qweight, n0 * 4)), ptr(offset(w.scales, n0 * 2)), ptr(offset(w.qzeros, n0)),
        i32(ns), i32(w.outFeatures), i32(K), i32(w.groupSize)]);
    return;
  }
  kernels.launch('dequant_q4_tile', grid, { x: DQ_THREADS },
    [ptr(scratch), ptr(offset(w.qweight, n0 * 4)), ptr(offset(w.scales, n0 * 2)), ptr(offset(w.qzeros, (n0 / 8) * 4)),
      i32(ns), i32(w.outFeatures), i32(K), i32(w.groupSize), i32(pairRows), i32(rowOff)]);
}

/** outputs per tile of the fused gate/up GEMM: a 256-row W tile holds 128 gate rows, then the same 128 up rows */
export const GATE_UP_PAIR = WG_BN / 2;

/**
 * y [rows, N] f32 = silu(xh Gᵀ) ⊙ (xh Uᵀ) and yh = its fp16 copy, one GEMM per slice: the slice's gate and up
 * columns dequantized interleaved (GATE_UP_PAIR rows of each per tile) into the scratch, then gemm_wgmma_256
 * with the SwiGLU epilogue. `plan` is planWgmma's for 2N rows of W. Needs N % GATE_UP_PAIR == 0, and gate and
 * up of one shape and group size, reading the same xh (one permutation or none).
 */
export function launchWgmmaGateUp(cu: Driver, kernels: KernelModule, plan: WgmmaPlan, gate: CudaGptq, up: CudaGptq, y: DevicePtr,
  yh: DevicePtr, xh: DevicePtr, rows: number): void {
  const K = gate.inFeatures, N = gate.outFeatures;
  if (plan.bn !== WG_BN) throw new RangeError(`the fused gate/up GEMM runs 256-wide tiles, not ${plan.bn} (planWgmma with pairs)`);
  const tm = tensorMaps(cu, plan, xh, K, rows);
  const outs = plan.cols / 2; // outputs per slice (plan.cols: W rows, a multiple of WG_BN unless one slice takes all)
  for (let n0 = 0; n0 < N; n0 += outs) {
    const ns = Math.min(outs, N - n0);
    dequantSlice(kernels, plan.scratch, gate, n0, ns, GATE_UP_PAIR, 0);
    dequantSlice(kernels, plan.scratch, up, n0, ns, GATE_UP_PAIR, GATE_UP_PAIR);
    const tiles = Math.ceil(rows / WG_BM) * Math.ceil((2 * ns) / WG_BN);
    kernels.launch('gemm_wgmma_256', { x: Math.min(tiles, plan.smCount) }, { x: 384 },
      [ptr(offset(y, n0 * 4)), i32(rows), i32(2 * ns), i32(N), i32(K), i32(0), i32(gate.groupSize), tm.a, tm.b(2 * ns),
        ptr(null), ptr(offset(yh, n0 * 2)), i32(1)],
      GEMM_WGMMA_SHARED);
  }
}
