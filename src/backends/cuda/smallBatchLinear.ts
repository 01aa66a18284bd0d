/**
 * `y (+)= x Wᵀ` for a few rows (batched decode: one token per sequence) on q4-layout 4-bit GPTQ
 * weights, split along K over about one wave of blocks, so even 2–16 rows use the whole card's
 * bandwidth (the 128-row-tile GEMM, gemm_q4_mma, runs only N/128 blocks there: 40 for a 13B attention
 * projection on a 132-SM card):
 *   - up to multiMaxRows rows (default 4): gemv_q4_multi<R> (gemv_q4_multi.cu), the one-token GEMV's
 *     integer kernel (x staged as int8) over 2 or 4 rows per launch. H200, 13B, recorded batched steps:
 *     3 / 4 sequences 564–573 / 671–683 tok/s against 430 / 569 with gemv_q4_rows; 8 rows as two such
 *     launches (W read twice) 791 against 1,062–1,078, so more rows take
 *   - gemv_q4_rows<NT> (gemv_q4_rows.cu), which reads each weight once for up to 16 rows and
 *     multiplies it into every row with tensor cores.
 * gemv_q4_multi also serves several matrices over the same x in one launch (launchSmallBatchGroup: batched decode's
 * q/k/v, and gate/up with SwiGLU in the epilogue), as the one-token GemvBatch does for one row.
 * gemv_q4_rows adds its split-K partial sums into y with float atomics, so a plain store zeroes y first (a
 * memset node inside graphs); gemv_q4_multi stores them through a workspace instead (no memset). Rows beyond
 * one gemv_q4_rows launch's 16 go out in further launches of up to 16 (each reads W again).
 * H200 (13B shapes, 2..8 rows): 1.1–1.35 TB/s, about 30% of the read ceiling and ~60% of the one-row
 * GEMV's bandwidth; still 4–5x the GEMM's decode steps (bench/cudaBatchBench.ts).
 */
import type { CuStream, DevicePtr, Driver } from './driver.js';
import { i32, ptr } from './kernelArgs.js';
import { kPerBlock } from './kSplit.js';
import type { LinearCall } from './linearLaunch.js';
import type { CudaGptq, CudaLinear } from './linearUpload.js';
import type { KernelModule } from './module.js';

export interface SmallBatchOptions {
  /** most rows that take this path (rows 2..maxRows); 0 or 1: never */
  readonly maxRows: number;
  /** most rows that take gemv_q4_multi (launches of up to MULTI_ROWS_PER_LAUNCH rows) instead of gemv_q4_rows */
  readonly multiMaxRows: number;
  readonly smCount: number;
  /**
   * gemv_q4_multi's split-K workspace ([wsTiles · 4 · 128] f32) and tickets ([wsTiles] u32), both zero between
   * launches (the kernel leaves them so); the one-row GEMV's, shared: launches on one stream never overlap there
   */
  readonly ws: DevicePtr;
  readonly counters: DevicePtr;
  readonly wsTiles: number;
}

/** Default most rows that take gemv_q4_multi (SmallBatchOptions.multiMaxRows). */
export const MULTI_MAX_ROWS = 4;
/** rows of one gemv_q4_multi launch (its largest R) */
export const MULTI_ROWS_PER_LAUNCH = 4;
/** QM_XS_ROWS · 8 in gemv_q4_multi.cu: most K values per block */
const MULTI_K_MAX = 2048;
/** blocks per SM the gemv_q4_multi grid aims at, by R: its __launch_bounds__ minimum */
const MULTI_BLOCKS_PER_SM = { 2: 4, 4: 3 } as const;

/**
 * Default most rows: up to 16 one launch reads W once (two 8-row n-tiles per mma); 17..32 go out as
 * launches of up to 16, still faster than the 128-row-tile GEMM, which runs only N/128 blocks (H200,
 * 13B shapes: 13824x5120 at 32 rows 305 us in the GEMM vs ~50 us per 16-row launch). Above, the GEMM.
 */
export const SMALL_BATCH_MAX_ROWS = 32;
/** rows of one launch: gemv_q4_rows2 (two n-tiles of 8) */
const ROWS_PER_LAUNCH = 16;
/** Q4R_XS_HALVES / (8·NT) in gemv_q4_rows.cu: most K values per block (the fp16 x it stages for 8·NT rows) */
const K_MAX = [0, 2048, 1024] as const;
/** blocks per SM the grid aims at: the kernels' __launch_bounds__ minimum (NT = 1: 4, NT = 2: 3) */
const BLOCKS_PER_SM = [0, 4, 3] as const;

/** Whether gemv_q4_rows serves `rows` rows of `w` (else the caller's GEMM). */
export function smallBatchFits(w: CudaLinear, rows: number, opts: Pick<SmallBatchOptions, 'maxRows'>): w is CudaGptq {
  return w.kind === 'gptq' && rows >= 2 && rows <= opts.maxRows && kernelTakes(w);
}

/** The weights gemv_q4_rows is written for: q4 layout, 4 bits, K % 128, N % 8 and groupSize % 32 == 0. */
function kernelTakes(w: CudaGptq): boolean {
  return w.layout === 'q4' && w.bits === 4 && w.inFeatures % 128 === 0 && w.outFeatures % 8 === 0 && w.groupSize % 32 === 0;
}

/**
 * K values per block: splits so tiles × splits ≈ one wave of BLOCKS_PER_SM blocks per SM, a multiple
 * of 128 (one 32-value unit per warp, K % 128 == 0), at most what the block holds in shared memory
 * (H200, 5120x13824: 512..2048 measured within 10%; one wave matters more: a second, nearly empty one
 * costs the whole block time again).
 */
export function smallBatchKPerBlock(K: number, tiles: number, smCount: number, nt: 1 | 2): number {
  // a K of at most SINGLE_RANGE_SLICES (tiny models) stays one range: each output then gets one atomic add onto
  // the zeroed y, so the sums do not depend on block order (as the one-row GEMV)
  return kPerBlock(K, tiles, smCount, { blocksPerSm: BLOCKS_PER_SM[nt], minSlices: 1, maxSlices: K_MAX[nt] / 128 });
}

/**
 * K values per block of gemv_q4_multi<R>: as the one-token GEMV (GemvBatch.kPerBlock), about one wave of
 * its blocks per SM with K split evenly in 128-value slices, at least 4 slices per block, at most
 * MULTI_K_MAX; a K of at most SINGLE_RANGE_SLICES slices stays one range (sums independent of block order).
 */
export function multiKPerBlock(K: number, tiles: number, smCount: number, R: 2 | 4): number {
  return kPerBlock(K, tiles, smCount, { blocksPerSm: MULTI_BLOCKS_PER_SM[R], minSlices: 4, maxSlices: MULTI_K_MAX / 128 });
}

/** gemv_q4_multi or gemv_q4_rows over c's rows, for a caller that checked smallBatchFits; a weight they do not take throws rather than launch. */
export function launchSmallBatch(cu: Driver, kernels: KernelModule, stream: CuStream, w: CudaGptq, c: LinearCall, opts: SmallBatchOptions): void {
  const K = w.inFeatures, N = w.outFeatures, smCount = opts.smCount;
  if (!kernelTakes(w)) {
    throw new RangeError(`gemv_q4_rows needs a q4-layout 4-bit weight with K % 128, N % 8 and groupSize % 32 == 0, not ${K}x${N} g${w.groupSize}`);
  }
  const tiles = Math.ceil(N / 128);
  if (c.rows <= opts.multiMaxRows && tiles <= opts.wsTiles) {
    // stores (split K: through the workspace) or adds: no memset of y
    for (let r0 = 0; r0 < c.rows; r0 += MULTI_ROWS_PER_LAUNCH) {
      const rows = Math.min(MULTI_ROWS_PER_LAUNCH, c.rows - r0);
      const y = (c.y + BigInt(r0 * N * 4)) as DevicePtr, x = (c.x + BigInt(r0 * K * 4)) as DevicePtr;
      launchMulti(kernels, [{ w, y }], x, rows, c.accumulate, null, opts);
    }
    return;
  }
  if (!c.accumulate) cu.memsetD32(c.y, 0, c.rows * N, stream);
  for (let r0 = 0; r0 < c.rows; r0 += ROWS_PER_LAUNCH) {
    const rows = Math.min(ROWS_PER_LAUNCH, c.rows - r0);
    const nt = rows <= 8 ? 1 : 2;
    const kPer = smallBatchKPerBlock(K, tiles, smCount, nt);
    kernels.launch(`gemv_q4_rows${nt}`, { x: tiles, y: Math.ceil(K / kPer) }, { x: 128 },
      [ptr((c.y + BigInt(r0 * N * 4)) as DevicePtr), ptr((c.x + BigInt(r0 * K * 4)) as DevicePtr), i32(rows), i32(N), i32(K),
        ptr(w.qweight), ptr(w.scales), ptr(w.qzeros), ptr(w.perm), i32(w.groupSize), i32(kPer)], 0, true);
  }
}

/** One matrix of a gemv_q4_multi launch and where its rows go (null: not stored, a SwiGLU pair's gate or up). */
export interface MultiMat { readonly w: CudaGptq; readonly y: DevicePtr | null }

/** sizeof(QMArgs) in gemv_q4_multi.cu, and its fields' offsets after the 3 QMMat of MULTI_MAT_BYTES */
const MULTI_ARGS_BYTES = 200;
const MULTI_MAT_BYTES = 48;
const MA = { x: 144, ws: 152, counters: 160, swiglu: 168, rows: 176, K: 180, gs: 184, kPerBlock: 188, accumulate: 192 } as const;

/** One gemv_q4_multi launch over `rows` (at most MULTI_ROWS_PER_LAUNCH) rows of x and up to 3 matrices that read it. */
function launchMulti(kernels: KernelModule, mats: readonly MultiMat[], x: DevicePtr, rows: number, accumulate: boolean,
  swiglu: DevicePtr | null, opts: SmallBatchOptions): void {
  const w0 = mats[0].w, K = w0.inFeatures;
  const a = Buffer.alloc(MULTI_ARGS_BYTES);
  let tiles = 0;
  for (let i = 0; i < 3; i++) {
    const o = i * MULTI_MAT_BYTES;
    if (i < mats.length) {
      const { w, y } = mats[i];
      tiles += Math.ceil(w.outFeatures / 128);
      a.writeBigUInt64LE(w.qweight, o);
      a.writeBigUInt64LE(w.scales, o + 8);
      a.writeBigUInt64LE(w.qzeros, o + 16);
      a.writeBigUInt64LE(w.perm ?? 0n, o + 24);
      a.writeBigUInt64LE(y ?? 0n, o + 32);
      a.writeInt32LE(w.outFeatures, o + 40);
    }
    a.writeInt32LE(tiles, o + 44); // unused slots end where the last used one ends
  }
  const R = rows <= 2 ? 2 : 4; // the kernels gemv_q4_multi.cu instantiates
  const kPer = multiKPerBlock(K, tiles, opts.smCount, R);
  a.writeBigUInt64LE(x, MA.x);
  a.writeBigUInt64LE(opts.ws, MA.ws);
  a.writeBigUInt64LE(opts.counters, MA.counters);
  a.writeBigUInt64LE(swiglu ?? 0n, MA.swiglu);
  a.writeInt32LE(rows, MA.rows);
  a.writeInt32LE(K, MA.K);
  a.writeInt32LE(w0.groupSize, MA.gs);
  a.writeInt32LE(kPer, MA.kPerBlock);
  a.writeInt32LE(accumulate ? 1 : 0, MA.accumulate);
  kernels.launch(`gemv_q4_multi${R}_rpg${w0.rowsPerGroup}`, { x: tiles, y: Math.ceil(K / kPer) }, { x: 128 }, [a], 0, true);
}

/**
 * Whether several linears over the same rows of x fit one gemv_q4_multi launch (launchSmallBatchGroup): at most one
 * launch's rows, weights of one K, group size and layout without bias, a SwiGLU pair of equal widths, every output
 * given where there is no SwiGLU, no more tiles than the workspace holds.
 */
export function smallBatchGroupFits(mats: readonly MultiMat[], rows: number, swiglu: DevicePtr | null, opts: SmallBatchOptions): boolean {
  if (mats.length < 1 || mats.length > 3 || (swiglu !== null && mats.length !== 2)) return false;
  if (rows < 2 || rows > Math.min(opts.multiMaxRows, MULTI_ROWS_PER_LAUNCH) || rows > opts.maxRows) return false;
  const w0 = mats[0].w;
  const same = (w: CudaGptq): boolean => kernelTakes(w) && w.bias === null && w.inFeatures === w0.inFeatures &&
    w.groupSize === w0.groupSize && w.rowsPerGroup === w0.rowsPerGroup;
  if (!mats.every((m) => same(m.w))) return false;
  if (swiglu !== null && mats[1].w.outFeatures !== w0.outFeatures) return false;
  if (swiglu === null && mats.some((m) => m.y === null)) return false;
  return mats.reduce((t, m) => t + Math.ceil(m.w.outFeatures / 128), 0) <= opts.wsTiles;
}

/**
 * Several linears over the same rows of x as one gemv_q4_multi launch (batched decode's q/k/v; with `swiglu`, a
 * gate/up pair whose epilogue writes silu(gate) · up there, gate and up themselves only where their y is given):
 * false, having launched nothing, where they do not fit one (smallBatchGroupFits). H200, 13B batched decode:
 * bench/cudaNotes.md, sixteenth pass.
 */
export function launchSmallBatchGroup(kernels: KernelModule, mats: readonly MultiMat[], x: DevicePtr, rows: number,
  swiglu: DevicePtr | null, opts: SmallBatchOptions): boolean {
  if (!smallBatchGroupFits(mats, rows, swiglu, opts)) return false;
  launchMulti(kernels, mats, x, rows, false, swiglu, opts);
  return true;
}
