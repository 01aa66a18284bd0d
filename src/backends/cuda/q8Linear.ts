/**
 * Launches of the 8-bit GEMVs (gemv_q8.cu) for weights in the q8 layout (linearUpload.ts): one row gemv_q8,
 * 2..Q8_GEMV_MAX_ROWS rows gemv_q8_r4 in launches of up to 4 rows (each weight read once per launch). Both add
 * into y with float atomics where K is split, so a plain store zeroes y first. More rows: linearLaunch.ts.
 */
import type { CuStream, DevicePtr, Driver } from './driver.js';
import { i32, ptr } from './kernelArgs.js';
import { kPerBlock } from './kSplit.js';
import type { LinearCall } from './linearLaunch.js';
import type { CudaGptq } from './linearUpload.js';
import type { KernelModule } from './module.js';

/** most rows the 8-bit GEMVs take; above, the tensor-core GEMM on sm_90 (or the generic one) */
export const Q8_GEMV_MAX_ROWS = 32;
/** gemv_q8's K split: one wave of 4 blocks per SM, at least one 128-value slice (a 32-value unit per warp), at most 64 (Q8_XS_ROWS) */
const ONE_ROW_SPLIT = { blocksPerSm: 4, minSlices: 1, maxSlices: 64, maxRanges: 64 } as const;
/** gemv_q8_r4's: 3 blocks per SM, at most 32 slices (the 4 rows of staged x) */
const FOUR_ROWS_SPLIT = { blocksPerSm: 3, minSlices: 1, maxSlices: 32, maxRanges: 64 } as const;

/** y (+)= x Wᵀ over c.rows ≤ Q8_GEMV_MAX_ROWS rows of a q8-layout weight. */
export function launchQ8Gemv(cu: Driver, kernels: KernelModule, stream: CuStream, w: CudaGptq, c: LinearCall, smCount: number): void {
  const K = w.inFeatures, N = w.outFeatures;
  if (w.layout !== 'q8' || c.rows < 1 || c.rows > Q8_GEMV_MAX_ROWS) throw new RangeError(`the 8-bit GEMVs take 1..${Q8_GEMV_MAX_ROWS} rows of a q8-layout weight, not ${c.rows} of ${w.layout}`);
  if (!c.accumulate) cu.memsetD32(c.y, 0, c.rows * N, stream);
  const tiles = Math.ceil(N / 128);
  const weight = [ptr(w.qweight), ptr(w.scales), ptr(w.qzeros), ptr(w.perm), i32(N), i32(K), i32(w.groupSize)];
  if (c.rows === 1) {
    const kPer = kPerBlock(K, tiles, smCount, ONE_ROW_SPLIT);
    kernels.launch('gemv_q8', { x: tiles, y: Math.ceil(K / kPer) }, { x: 128 }, [ptr(c.y), ptr(c.x), ...weight, i32(kPer)], 0, true);
    return;
  }
  const kPer = kPerBlock(K, tiles, smCount, FOUR_ROWS_SPLIT);
  for (let r0 = 0; r0 < c.rows; r0 += 4) {
    kernels.launch('gemv_q8_r4', { x: tiles, y: Math.ceil(K / kPer) }, { x: 128 },
      [ptr((c.y + BigInt(r0 * N * 4)) as DevicePtr), ptr((c.x + BigInt(r0 * K * 4)) as DevicePtr), i32(Math.min(4, c.rows - r0)), ...weight, i32(kPer)], 0, true);
  }
}
