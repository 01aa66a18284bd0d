/**
 * The Hopper register-A prefill GEMM (gemm_rs_256, gemm_rs_256_swiglu: gemm_wgmma_rs.cuh): y (+)= xh Wᵀ from the
 * int4 words themselves. Each consumer thread dequantizes its own wgmma A fragment (W is A, the product runs as
 * yᵀ = W xhᵀ), so no fp16 copy of W is written: dequant_q4_tile's fixed ~0.24 ms per 13B layer goes, at the cost
 * of a slower multiply (dequantization in the consumers' instruction stream). H200 lab (gemm-lab.sh, 13B shapes,
 * ms per linear) against dequant_q4_tile + gemm_wgmma_256:
 *   512 rows:  q/k/v 0.142 vs 0.180, o 0.071 vs 0.081, gate/up 0.278 vs 0.333, down 0.174 vs 0.195 (register A wins)
 *   2048 rows: q/k/v 0.554 vs 0.521, o 0.218 vs 0.202, gate/up 1.016–1.089 vs 0.915, down 0.533 vs 0.487
 * In the product (bench/cudaPrefillProfile.js, 13B synthetic, H200, same call) the whole prompt:
 *   512 tokens 13,709 → 14,682 tok/s, 768 16,428 → 19,624, 1024 17,552 → 15,740 (a loss) (session 10).
 * At 1024 rows 13B's q/k/v/o and down make 4 · 40 = 160 tiles of 256 × 128, 1.2 waves on 132 SMs, where
 * the dequant path's 160-wide tiles fill 2 waves; up to 768 rows (3 token tiles, 120) they fit one. Hence RS_MAX_ROWS,
 * and above it the wave rule (RS_MIN_FILL). Since session 15 (4-instruction dequantization, one-stage refills) it
 * also wins at 1536 and 2048 rows, where dequant + wgmma runs into the card's power limit and it does not:
 *   1536 tokens 19,133 → 21,724 tok/s, 2048 19,411 → 20,104 (H200, same call; BENCHMARKS.md, session 15).
 * Below WGMMA_MIN_ROWS the other path is gemm_q4_mma (mma.sync, int4 dequantized per slice in shared memory),
 * which the register-A GEMM beats by far: whole 13B prompts of 40 / 96 / 128 / 256 / 384 tokens 979 / 2,175 / 2,836 /
 * 5,409 / 6,657 → 1,537 / 3,636 / 4,800 / 9,267 / 11,335 tok/s (H200, bench/cudaPrefillProfile.js, same call).
 * Short prompts took ~26 ms whatever their length: each launch had few tiles (o_proj at 40 rows: 40 blocks on 132
 * SMs), each streaming its 80 K slices in turn; so launches of at most half the SMs' tiles split K (rsSplits).
 */
import { TensorMapDtype, TensorMapSwizzle, type CuStream, type DevicePtr, type Driver } from './driver.js';
import { f32, i32, ptr } from './kernelArgs.js';
import type { CudaGptq } from './linearUpload.js';
import type { KernelModule } from './module.js';
import { SMALL_BATCH_MAX_ROWS } from './smallBatchLinear.js';

/** W rows per block tile (gemm_wgmma_rs.cuh RS_BW) and threads (RS_THREADS) */
const RS_BW = 128, RS_THREADS = 256;
/**
 * The two builds of the kernel (gemm_wgmma.cu RS_ENTRIES): tokens per tile and ring stages (RsCfg<BT, R>), and
 * their dynamic shared memory: per stage the xh tile, the packed words, scales and zeros, then 1 KiB alignment.
 * 128-token tiles for prompts of at most RS_SMALL_ROWS: the padding of a 256-token tile is wasted tensor work,
 * and the short prompts' launches are bound by each block's slices in turn. H200, 13B, same call: the linears'
 * kernels 0.42–0.45 → 0.37–0.40 ms per layer at 40 / 96 / 128 rows; whole prompts of 96 / 128 tokens 5,995 / 7,706
 * → 6,897 / 8,715 tok/s, of 40 tokens 2,493 → 2,369 (one run each; at 40 rows the pass is mostly not these kernels).
 */
export interface RsBuild { readonly bt: 128 | 256; readonly kernel: string; readonly shared: number }
const rsBuild = (bt: 128 | 256, stages: number): RsBuild =>
  ({ bt, kernel: `gemm_rs_${bt}`, shared: stages * (bt * 64 * 2 + 8 * RS_BW * 4 + 2 * RS_BW * 2 + 256) + 1024 });
export const RS_BUILDS: readonly RsBuild[] = [rsBuild(256, 6), rsBuild(128, 8)];
/** the most shared memory either build takes */
export const GEMM_RS_SHARED = Math.max(...RS_BUILDS.map((b) => b.shared));
/** most rows that take the 128-token build (CudaBackend.rsSmallRows) */
export const RS_SMALL_ROWS = 128;

/** the build for a launch of `rows` rows (128-token tiles up to smallRows) */
export function rsBuildFor(rows: number, smallRows: number): RsBuild {
  return rows <= smallRows ? RS_BUILDS[1] : RS_BUILDS[0];
}

/**
 * Fewest and most rows that always take the register-A GEMM instead of gemm_q4_mma (below WGMMA_MIN_ROWS) or
 * dequant + wgmma (header: why). From just above the batched-decode kernels' rows (gemv_q4_rows, W read once for
 * all rows). Above RS_MAX_ROWS a launch takes it where its tiles fill the waves well (rsWaveFill ≥ RS_MIN_FILL).
 */
export const RS_MAX_ROWS = 768, RS_MIN_ROWS = SMALL_BATCH_MAX_ROWS + 1;
/**
 * Least share of the SMs' turns (tiles over whole waves of them) with which a launch above RS_MAX_ROWS takes the
 * register-A GEMM. It needs no fp16 copy of W, so the 2048-token prompt that runs at the card's power limit on
 * dequant + wgmma (1,590–1,605 MHz, 710 W on the H200) runs at full clock on it (1,980 MHz, 634 W), but every
 * partial wave is idle SMs at that clock. H200, 13B, one call, whole prompts (this rule vs dequant + wgmma above
 * 768 rows): 2048 rows (q/k/v/o/down 320 tiles on 132 SMs: fill 0.81; gate/up 0.94) 20,104 vs 19,411 tok/s; 1536
 * (0.91; 0.98) 21,724 vs 19,133; 1024 (0.61: gate/up alone takes it) 19,731 vs 18,502, where every launch on the
 * register-A GEMM ran 17,250.
 */
export const RS_MIN_FILL = 0.8;

/** the tiles of a launch of `rows` rows over `wTiles` tiles of W, in `build`'s token tiles */
export const rsTiles = (rows: number, wTiles: number, build: RsBuild = RS_BUILDS[0]): number => Math.ceil(rows / build.bt) * wTiles;

/** the share of the SMs' turns that `units` work units (tiles, or tiles' K ranges) of one launch fill */
export const rsUnitFill = (units: number, smCount: number): number => units / (Math.ceil(units / smCount) * smCount);

/** the share of the SMs' turns that a launch of `rows` rows over `wTiles` tiles of W fills (rsBuildFor's 256-token tiles) */
export function rsWaveFill(rows: number, wTiles: number, smCount: number): number {
  return rsUnitFill(rsTiles(rows, wTiles), smCount);
}

/** the register-A rows policy (CudaBackend.rsMinRows, rsMaxRows, rsMinFill, rsSplitFill) */
export interface RsPolicy {
  readonly minRows: number; readonly maxRows: number; readonly minFill: number; readonly smCount: number;
  /** rsSplits's minFill (0: tiles split only where they fill less than half the SMs) */
  readonly splitFill: number;
}

/**
 * whether a launch of `rows` rows over `wTiles` tiles of W takes the register-A GEMM (maxRows 0: never). nk: the
 * K slices of a plain launch, which may split K (rsSplits), so that its fill is that of its K ranges; gate/up and
 * q/k/v launches never split.
 */
export function rsTakes(rows: number, wTiles: number, p: RsPolicy, nk?: number): boolean {
  if (rows < p.minRows || p.maxRows === 0) return false;
  if (rows <= p.maxRows) return true;
  const tiles = rsTiles(rows, wTiles), splits = nk === undefined ? 1 : rsSplits(tiles, nk, p.smCount, p.splitFill);
  return rsUnitFill(tiles * splits, p.smCount) >= p.minFill;
}

/** outputs per tile of the gate/up launch (64 gate and 64 up rows of W) */
export const RS_GATE_UP_OUTPUTS = RS_BW / 2;
/** tiles of W of a plain launch of `outputs` outputs */
export const rsPlainTiles = (outputs: number): number => Math.ceil(outputs / RS_BW);

/** fewest K slices (of 64) in one range of a split launch */
const RS_MIN_SPLIT_SLICES = 16;

/** most K ranges per tile that the fill rule of rsSplits takes */
const RS_FILL_MAX_SPLITS = 4;

/**
 * Least share of the SMs' turns that a plain launch's whole tiles must fill not to split K (rsSplits). 13B's o_proj
 * and down_proj at 2048 rows (320 tiles on 132 SMs: 0.81) split 2 ways (640 K ranges: 0.97), at 512 rows (80 tiles:
 * 0.61) 3 ways (0.91). H200, whole 13B prompts, one call, this rule (90%) / 95% / none: 2048 tokens 21,924 / 21,862
 * / 21,454 tok/s and 21,914 / 21,832 / 21,532; 512 tokens 20,428 / 20,333 / 18,930 and 20,127 / 20,286 / 19,038.
 * Both are residual adds (accumulate), whose K ranges add into y with no zeroing first.
 */
export const RS_SPLIT_MIN_FILL = 0.9;

/**
 * K ranges per tile for a plain launch of `tiles` tiles over nk slices, each at least RS_MIN_SPLIT_SLICES:
 * - where the tiles fill at least half the SMs, as many as the SMs allow (13B at 40–256 rows: q, k, v, o and down
 *   have 40 tiles, 3 ranges: short prompts took ~26 ms whatever their length, each block streaming its 80 slices);
 * - else 1 where the tiles fill at least `minFill` of the SMs' turns (rsUnitFill; minFill 0: always), or the fewest
 *   up to RS_FILL_MAX_SPLITS whose ranges do, or else the best filling.
 * The ranges' sums meet in y through float atomics: their order varies between runs (tiny models' K of a few slices
 * never splits, so their logits stay bit-reproducible).
 */
export function rsSplits(tiles: number, nk: number, smCount: number, minFill = RS_SPLIT_MIN_FILL): number {
  if (2 * tiles <= smCount) return Math.max(1, Math.min(Math.floor(smCount / tiles), Math.floor(nk / RS_MIN_SPLIT_SLICES)));
  if (minFill <= 0 || rsUnitFill(tiles, smCount) >= minFill) return 1;
  let best = 1, bestFill = rsUnitFill(tiles, smCount);
  for (let s = 2; s <= RS_FILL_MAX_SPLITS && nk / s >= RS_MIN_SPLIT_SLICES; s++) {
    const fill = rsUnitFill(tiles * s, smCount);
    if (fill >= minFill) return s;
    if (fill > bestFill) [best, bestFill] = [s, fill];
  }
  return best;
}

/** q4-layout 4-bit weights of the shapes the kernel takes (K % 64, N % 32 for the qzeros map's rows, gs 32 or k·64) */
export function rsFits(w: CudaGptq): boolean {
  return w.layout === 'q4' && w.bits === 4 && w.inFeatures % 64 === 0 && w.outFeatures % 32 === 0 &&
    (w.groupSize === 32 || w.groupSize % 64 === 0);
}

interface WeightMaps { readonly q: Buffer; readonly s: Buffer; readonly z: Buffer }
/** a weight's tensor maps by box width (128: plain tiles, 64: a gate or up half of a SwiGLU tile), made once */
const mapsOf = new WeakMap<CudaGptq, Map<number, WeightMaps>>();

function weightMaps(cu: Driver, w: CudaGptq, box: 128 | 64): WeightMaps {
  let byBox = mapsOf.get(w);
  if (!byBox) mapsOf.set(w, (byBox = new Map()));
  const have = byBox.get(box);
  if (have) return have;
  const K = w.inFeatures, N = w.outFeatures, gs = w.groupSize, sg = gs === 32 ? 2 : 1, none = TensorMapSwizzle.None;
  const u32 = TensorMapDtype.U32;
  const maps: WeightMaps = {
    q: cu.encodeTensorMap2d({ base: w.qweight, inner: N, outer: K / 8, rowBytes: N * 4, boxInner: box, boxOuter: 8, swizzle: none, dtype: u32 }),
    s: cu.encodeTensorMap2d({ base: w.scales, inner: N, outer: K / gs, rowBytes: N * 2, boxInner: box, boxOuter: sg, swizzle: none }),
    z: cu.encodeTensorMap2d({
      base: w.qzeros, inner: N / 8, outer: K / gs, rowBytes: N / 2, boxInner: box / 8, boxOuter: sg, swizzle: none, dtype: u32,
    }),
  };
  byBox.set(box, maps);
  return maps;
}

/** gate's and up's maps as one 3-D map each (their third dimension from gate's arrays to up's), made once per pair */
const pairedOf = new WeakMap<CudaGptq, { up: CudaGptq; maps: WeightMaps | null }>();

/**
 * gate and up as one 3-D map per array for the _swiglu_paired entries, or null where up's arrays do not lie above
 * gate's at multiples of 16 bytes (a TMA stride), or the driver refuses such a map
 */
function pairedWeightMaps(cu: Driver, gate: CudaGptq, up: CudaGptq): WeightMaps | null {
  const have = pairedOf.get(gate);
  if (have?.up === up) return have.maps;
  const K = gate.inFeatures, N = gate.outFeatures, gs = gate.groupSize, sg = gs === 32 ? 2 : 1, none = TensorMapSwizzle.None;
  const u32 = TensorMapDtype.U32;
  const gaps = [up.qweight - gate.qweight, up.scales - gate.scales, up.qzeros - gate.qzeros];
  let maps: WeightMaps | null = null;
  if (gaps.every((d) => d > 0n && d % 16n === 0n && d < 1n << 40n)) {
    try {
      maps = {
        q: cu.encodeTensorMap3d({ base: gate.qweight, inner: N, outer: K / 8, rowBytes: N * 4, boxInner: 64, boxOuter: 8, swizzle: none, dtype: u32 }, 2, gaps[0], 2),
        s: cu.encodeTensorMap3d({ base: gate.scales, inner: N, outer: K / gs, rowBytes: N * 2, boxInner: 64, boxOuter: sg, swizzle: none }, 2, gaps[1], 2),
        z: cu.encodeTensorMap3d({
          base: gate.qzeros, inner: N / 8, outer: K / gs, rowBytes: N / 2, boxInner: 8, boxOuter: sg, swizzle: none, dtype: u32,
        }, 2, gaps[2], 2),
      };
    } catch {
      maps = null;
    }
  }
  pairedOf.set(gate, { up, maps });
  return maps;
}

function xMap(cu: Driver, xh: DevicePtr, rows: number, K: number, bt: number): Buffer {
  return cu.encodeTensorMap2d({ base: xh, inner: K, outer: rows, rowBytes: K * 2, boxInner: 64, boxOuter: bt, swizzle: TensorMapSwizzle.B128 });
}

/**
 * y [rows, N] f32 (+)= xh [rows, K] fp16 · Wᵀ (xh: x_to_half's copy of x, gathered through w.perm). rsFits(w) holds.
 * A split launch adds into y, so a plain one zeroes y first (a memset on the stream).
 */
export function launchRs(cu: Driver, kernels: KernelModule, stream: CuStream, smCount: number, splitFill: number, build: RsBuild, w: CudaGptq,
  y: DevicePtr, xh: DevicePtr, rows: number, accumulate: boolean, pdl = false): void {
  const K = w.inFeatures, N = w.outFeatures, m = weightMaps(cu, w, 128);
  const tiles = rsTiles(rows, rsPlainTiles(N), build), splits = rsSplits(tiles, K / 64, smCount, splitFill);
  if (splits > 1 && !accumulate) cu.memsetD32(y, 0, rows * N, stream);
  kernels.launch(build.kernel, { x: Math.min(tiles * splits, smCount) }, { x: RS_THREADS },
    [ptr(y), i32(rows), i32(N), i32(N), i32(K), i32(accumulate ? 1 : 0), i32(w.groupSize), i32(splits), xMap(cu, xh, rows, K, build.bt), m.q, m.s, m.z],
    build.shared, pdl);
}

/**
 * y [rows, N] f32 = silu(xh Gᵀ) ⊙ (xh Uᵀ) and yh its fp16 copy (y null: the copy only), in one launch. rsFits for
 * both, one shape, group size and permutation, N % 64 == 0.
 */
export function launchRsGateUp(cu: Driver, kernels: KernelModule, smCount: number, build: RsBuild, gate: CudaGptq, up: CudaGptq,
  y: DevicePtr | null, yh: DevicePtr, xh: DevicePtr, rows: number, paired: boolean, pdl = false): void {
  const K = gate.inFeatures, N = gate.outFeatures, tiles = rsTiles(rows, N / RS_GATE_UP_OUTPUTS, build);
  const p = paired ? pairedWeightMaps(cu, gate, up) : null;
  if (p !== null) {
    kernels.launch(`${build.kernel}_swiglu_paired`, { x: Math.min(tiles, smCount) }, { x: RS_THREADS },
      [ptr(y), ptr(yh), i32(rows), i32(N), i32(N), i32(K), i32(gate.groupSize), xMap(cu, xh, rows, K, build.bt), p.q, p.s, p.z], build.shared, pdl);
    return;
  }
  const g = weightMaps(cu, gate, 64), u = weightMaps(cu, up, 64);
  kernels.launch(`${build.kernel}_swiglu`, { x: Math.min(tiles, smCount) }, { x: RS_THREADS },
    [ptr(y), ptr(yh), i32(rows), i32(N), i32(N), i32(K), i32(gate.groupSize), xMap(cu, xh, rows, K, build.bt), g.q, g.s, g.z, u.q, u.s, u.z],
    build.shared, pdl);
}

/**
 * Whether q, k and v can run as one gemm_rs_256_qkv launch of `rows` rows whose register-A build (rsBuildFor) is
 * `build`: three 4-bit q4 weights without bias, each rsFits, of one shape, group size and act-order permutation (so
 * one fp16 copy of x serves them), the 256-token build, whole tiles (no K split: the launch never zeroes its
 * outputs), and its tiles fill the SMs' turns better than one weight's launch does (rsWaveFill, by more than
 * RS_QKV_MIN_FILL_GAIN).
 */
export function rsQkvFits(ws: readonly CudaGptq[], rows: number, build: RsBuild, smCount: number): boolean {
  if (ws.length !== 3 || build !== RS_BUILDS[0]) return false;
  const [a] = ws;
  if (!ws.every((w) => rsFits(w) && !w.bias && w.inFeatures === a.inFeatures && w.outFeatures === a.outFeatures &&
    w.groupSize === a.groupSize && w.perm === a.perm)) return false;
  const wTiles = rsPlainTiles(a.outFeatures);
  if (rsSplits(rsTiles(rows, 3 * wTiles), a.inFeatures / 64, smCount, 0) !== 1) return false;
  return rsWaveFill(rows, 3 * wTiles, smCount) > rsWaveFill(rows, wTiles, smCount) + RS_QKV_MIN_FILL_GAIN;
}

/**
 * How much better the q/k/v launch must fill the SMs' turns than one weight's launch to be taken. Where the two fill
 * alike, one launch gains nothing and its per-slice selects cost a little. H200, 13B, whole prompts, one call, q/k/v
 * in one launch / apart: 2048 rows (fill 0.91 vs 0.81) 20,507 / 20,512 vs 20,276 / 20,226 tok/s; 1024 (0.91 vs 0.61)
 * 20,373 vs 19,512; 512 (0.91 vs 0.61) 17,205 vs 15,988; 1536 (0.91 vs 0.91) 21,601 vs 21,841.
 */
export const RS_QKV_MIN_FILL_GAIN = 0.02;

/** the q/k/v entry (256-token tiles only: rsQkvFits) */
export const RS_QKV_KERNEL = `${RS_BUILDS[0].kernel}_qkv`;

/** q written as attention's fp16 Q tile instead (launchRsQkvRope): where, and the softmax scale folded in */
export interface QTile {
  readonly at: DevicePtr;
  readonly scale: number;
  /** the per-head counters the launch adds its finished tiles to (attention waits on them), or null */
  readonly ready?: DevicePtr | null;
}

/**
 * Fewest rounds of tiles (over the SMs) of the q/k/v rope launch behind which prompt attention starts per head
 * (CudaBackend.attnOverlap). With fewer, every head's last v tile falls in the last round, so no attention block can
 * start early and the wait only costs. H200, 13B, whole prompts, one call, overlap on / off: 2048 rows (8 rounds)
 * 23,972 / 23,963 / 23,938 vs 23,777 / 23,774 / 23,782 tok/s (act-order 23,619 vs 23,527); 512 rows (2 rounds)
 * 22,177 / 22,377 vs 22,390 / 22,431.
 */
export const RS_QKV_OVERLAP_MIN_ROUNDS = 4;

/** whether attention may overlap the q/k/v rope launch of `rows` rows of width n (RS_QKV_OVERLAP_MIN_ROUNDS) */
export const rsQkvRopeOverlaps = (rows: number, n: number, smCount: number): boolean =>
  Math.ceil(rsTiles(rows, 3 * rsPlainTiles(n)) / smCount) >= RS_QKV_OVERLAP_MIN_ROUNDS;

/** a head's tiles in the q/k/v rope launch of `rows` rows (its q, k and v tiles of each 256-row token tile): what its counter gains */
export const rsQkvRopeHeadTiles = (rows: number): number => rsTiles(rows, 3);

/** the q/k/v entry with rotary embedding and the KV-cache write in its epilogue (launchRsQkvRope), by its precision */
export const rsQkvRopeKernel = (bits: 32 | 64): string => `${RS_QKV_KERNEL}_rope${bits === 64 ? '' : '32'}`;

/** the three weights' maps of a q/k/v launch, in the entries' order (q's q, s, z, then k's, then v's) */
function qkvMaps(cu: Driver, ws: readonly CudaGptq[]): ReturnType<typeof ptr>[] {
  return ws.flatMap((w) => {
    const m = weightMaps(cu, w, 128);
    return [m.q, m.s, m.z];
  });
}

/**
 * q [rows, N] f32 = rope(xh · wqᵀ), and the KV cache rows kc / vc [rows, N] fp16 (from the chunk's first position) =
 * rope(xh · wkᵀ) and xh · wvᵀ, in one launch (gemm_rs_256_qkv_rope32, or _rope with bits 64): rsQkvFits holds, heads
 * of 128 (N % 128 == 0), k and v of q's width. rope: the chunk's rope_table_f32 (f32 math), or rope_table_f64 (bits
 * 64: rope_kv_f32's bits). Saves rope_kv_f32's pass (0.076 ms per 13B layer at 2048 rows on an H200) and the f32 k, v.
 * qTile: q goes to qTile.at [rows, N] as half(q · qTile.scale) instead (attn_flash_wg_128's Q tile, its qh).
 */
export function launchRsQkvRope(cu: Driver, kernels: KernelModule, smCount: number, ws: readonly CudaGptq[], q: DevicePtr, kc: DevicePtr,
  vc: DevicePtr, rope: DevicePtr, bits: 32 | 64, xh: DevicePtr, rows: number, pdl = false, qTile: QTile | null = null): void {
  const K = ws[0].inFeatures, N = ws[0].outFeatures, build = RS_BUILDS[0];
  const tiles = rsTiles(rows, 3 * rsPlainTiles(N), build);
  kernels.launch(rsQkvRopeKernel(bits), { x: Math.min(tiles, smCount) }, { x: RS_THREADS },
    [ptr(q), ptr(kc), ptr(vc), ptr(rope), i32(rows), i32(N), i32(K), i32(ws[0].groupSize), xMap(cu, xh, rows, K, build.bt), ...qkvMaps(cu, ws),
      ptr(qTile?.at ?? null), f32(qTile?.scale ?? 1), ptr(qTile?.ready ?? null)],
    build.shared, pdl);
}

/**
 * ys[i] [rows, N] f32 = xh [rows, K] fp16 · ws[i]ᵀ for q, k and v in one launch (rsQkvFits holds): their tiles as
 * one GEMM of 3N outputs, so 13B's 2048-token prompt fills 91% of the SMs' turns where three launches fill 81%.
 */
export function launchRsQkv(cu: Driver, kernels: KernelModule, smCount: number, ws: readonly CudaGptq[], ys: readonly DevicePtr[],
  xh: DevicePtr, rows: number, pdl = false): void {
  const K = ws[0].inFeatures, N = ws[0].outFeatures, build = RS_BUILDS[0];
  const tiles = rsTiles(rows, 3 * rsPlainTiles(N), build);
  kernels.launch(RS_QKV_KERNEL, { x: Math.min(tiles, smCount) }, { x: RS_THREADS },
    [ptr(ys[0]), ptr(ys[1]), ptr(ys[2]), i32(rows), i32(N), i32(K), i32(ws[0].groupSize), i32(1), xMap(cu, xh, rows, K, build.bt), ...qkvMaps(cu, ws)],
    build.shared, pdl);
}
