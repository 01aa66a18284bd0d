/**
 * Launches of `y (+)= x Wᵀ + b` for every weight kind and row count:
 *   one row:  int4 fast GEMV (gemv_q4_rpg*, queued in a GemvBatch so that GEMVs over the same x share
 *             one launch), 8-bit GEMV (gemv_q8, q8 layout), generic GPTQ GEMV (gemv_qn), fp16 GEMV (gemv_f16)
 *   rows 2..32: q8 layout gemv_q8_r4 (4 rows per launch); q4 layout with `gemm.smallBatch` (batched decode,
 *             smallBatchLinear.ts): up to multiMaxRows (4) rows gemv_q4_multi (int8 x, W read once per 4 rows),
 *             more gemv_q4_rows (tensor cores, W read once per 16 rows)
 *   rows > 1: q4 layout: x to fp16 (gathered through perm for act-order; halfCopies.ts, shared by the
 *             linears that read the same x), then
 *             on sm_90, rows in the register-A range (`gemm.wgmma.takesRs`, rsLinear.ts): gemm_rs_256, the int4
 *             words dequantized into wgmma's register operand, no fp16 copy of W;
 *             other rows ≥ WGMMA_MIN_ROWS on sm_90 (`gemm.wgmma`, wgmmaLinear.ts): per slice of N (y's columns,
 *             planned by wgmmaSlicePlan), the slice's weights dequantized to an fp16 [Ns, K] scratch
 *             (dequant_q4_tile), then the wgmma/TMA GEMM on it into those columns (gemm_wgmma_256, gemm_wgmma.cu);
 *             else the mma.sync GEMM that dequantizes each weight slice once into shared memory (gemm_q4_mma);
 *             q8 layout (8-bit): above 32 rows (Q8_GEMV_MAX_ROWS), on sm_90, the same sliced GEMM after dequant_q8_tile;
 *             other layouts, or `mma: false`: the older wmma GEMM with per-element dequantization
 *             (gemm_gptq, gemm_f16)
 * gemv_qn splits K across blocks and adds atomically, so its plain outputs are zeroed first (a memset
 * node inside graphs); gemv_q4 reduces through a self-cleaning workspace and needs no memset.
 */
import type { CuStream, DevicePtr, Driver } from './driver.js';
import { i32, ptr } from './kernelArgs.js';
import { GemvBatch } from './gemvBatch.js';
import type { CudaLinear } from './linearUpload.js';
import type { KernelModule } from './module.js';
import { launchQ8Gemv, Q8_GEMV_MAX_ROWS } from './q8Linear.js';
import { launchSmallBatch, smallBatchFits, type SmallBatchOptions } from './smallBatchLinear.js';
import { launchRs, rsFits, rsPlainTiles } from './rsLinear.js';
import { launchWgmmaSlices, planWgmma, type WgmmaOptions } from './wgmmaLinear.js';

export type { WgmmaOptions } from './wgmmaLinear.js';
export { GEMM_WGMMA_SHARED } from './wgmmaLinear.js';

export interface LinearCall {
  readonly y: DevicePtr; // [rows, N] f32
  readonly x: DevicePtr; // [rows, K] f32
  readonly rows: number;
  /** true: y += x Wᵀ (+ b); false: y = x Wᵀ (+ b) */
  readonly accumulate: boolean;
}

/** How rows > 1 run on q4-layout weights. */
export interface GemmOptions {
  /** the mma.sync GEMM (gemm_q4_mma); false: the older wmma kernel */
  readonly mma: boolean;
  /** the fp16 copy of x (gathered through perm), converted unless already held (halfCopies.ts) */
  readonly half: (x: DevicePtr, rows: number, cols: number, perm: DevicePtr | null) => DevicePtr;
  /** called before a kernel reads x's f32 rows: throws where they were left unwritten (HalfCopies.checkWritten) */
  readonly readsF32?: (x: DevicePtr) => void;
  /** the Hopper GEMM for rows ≥ WGMMA_MIN_ROWS (sm_90 with tensor maps), else null */
  readonly wgmma: WgmmaOptions | null;
  /** batched decode: 2..maxRows rows on q4 weights take gemv_q4_rows (smallBatchLinear.ts); absent or null: never */
  readonly smallBatch?: SmallBatchOptions | null;
}

/**
 * Fewest rows for the wgmma path. Its dequantization costs a fixed ~0.24 ms per 13B layer (dequant_q4_tile,
 * H200; the first kernel took 0.75), repaid from 512 rows: H200 lab (gemm-lab.sh, the layer's 7 linears,
 * sliced as the product runs them) 0.98 vs 1.65 ms per layer for gemm_q4_mma at 512 rows, 0.96 vs 1.11 at
 * 256 (a tie once slices leave SMs idle); cudaBench prefill 512 on the H200 9,712 vs 6,719 tok/s at 1024.
 */
export const WGMMA_MIN_ROWS = 512;

/** dynamic shared memory of gemm_q4_mma (gemm_mma.cu: 4 stages of x and packed weights + one fp16 weight tile) */
export const GEMM_MMA_SHARED = 108544;

export function launchLinear(cu: Driver, kernels: KernelModule, stream: CuStream, batch: GemvBatch, w: CudaLinear, c: LinearCall,
  gemm?: GemmOptions): void {
  const K = w.inFeatures, N = w.outFeatures;
  if (!(c.rows === 1 && w.kind === 'gptq' && GemvBatch.fits(w))) batch.flush(); // keep the model's order
  const f32 = (): void => gemm?.readsF32?.(c.x); // (each branch that reads x's f32 rows says so first)
  if (w.kind === 'dense') {
    f32();
    if (c.rows === 1 && K % 8 === 0) {
      kernels.launch('gemv_f16', { x: Math.ceil(N / 8) }, { x: 256 }, [ptr(c.y), ptr(c.x), ptr(w.w), i32(K), i32(N), i32(c.accumulate ? 1 : 0)], 0, true);
    } else {
      kernels.launch('gemm_f16', { x: Math.ceil(N / 64), y: Math.ceil(c.rows / 64) }, { x: 128 },
        [ptr(c.y), ptr(c.x), i32(c.rows), i32(N), i32(K), i32(c.accumulate ? 1 : 0), ptr(w.w)], 0, true);
    }
  } else if (c.rows === 1) {
    f32();
    if (GemvBatch.fits(w)) {
      batch.add(c.y, c.x, w, c.accumulate);
      if (!w.bias) return; // launched with the batch it joins
      batch.flush();
    } else if (w.layout === 'q8') {
      launchQ8Gemv(cu, kernels, stream, w, c, batch.smCount);
    } else {
      if (!c.accumulate) cu.memsetD32(c.y, 0, N, stream);
      const kPerSplit = 128;
      kernels.launch('gemv_qn', { x: Math.ceil(N / 128), y: Math.ceil(K / kPerSplit) }, { x: 128 },
        [ptr(c.y), ptr(c.x), ptr(w.qweight), ptr(w.scales), ptr(w.qzeros), ptr(w.gIdx), i32(K), i32(N), i32(w.bits), i32(kPerSplit)]);
    }
  } else if (w.layout === 'q8' && c.rows <= Q8_GEMV_MAX_ROWS) {
    f32();
    // a few rows (batched decode, short prompts): gemv_q8_r4, each weight read once per 4 rows (whatever the
    // small-batch switch says: it chooses among the 4-bit kernels, and the 8-bit path has nothing else for so few)
    launchQ8Gemv(cu, kernels, stream, w, c, batch.smCount);
  } else if (gemm?.smallBatch && smallBatchFits(w, c.rows, gemm.smallBatch)) {
    f32();
    launchSmallBatch(cu, kernels, stream, w, c, gemm.smallBatch);
  } else if (gemm?.mma && w.layout === 'q4' && w.bits === 4 && K % 64 === 0 && N % 8 === 0 && w.groupSize % 32 === 0) {
    // (K % 64 and N % 8, which this branch already requires, are also all the wgmma path needs)
    const rs = gemm.wgmma !== null && gemm.wgmma.takesRs(c.rows, rsPlainTiles(N), K / 64) && rsFits(w) ? gemm.wgmma : null;
    const wg = rs === null && gemm.wgmma !== null && c.rows >= WGMMA_MIN_ROWS ? gemm.wgmma : null;
    const plan = wg !== null ? planWgmma(wg, c.rows, N, K) : null; // before launching: growing the weight scratch synchronizes
    const xh = gemm.half(c.x, c.rows, K, w.perm);
    if (rs !== null) {
      launchRs(cu, kernels, stream, rs.smCount, rs.rsSplitFill(), rs.rsBuild(c.rows), w, c.y, xh, c.rows, c.accumulate, rs.rsPdl());
    } else if (plan !== null) {
      launchWgmmaSlices(cu, kernels, plan, w, c.y, xh, c.rows, c.accumulate);
    } else {
      kernels.launch('gemm_q4_mma', { x: Math.ceil(N / 128), y: Math.ceil(c.rows / 128) }, { x: 256 },
        [ptr(c.y), ptr(xh), i32(c.rows), i32(N), i32(K), i32(c.accumulate ? 1 : 0),
          ptr(w.qweight), ptr(w.scales), ptr(w.qzeros), i32(w.groupSize)], GEMM_MMA_SHARED);
    }
  } else if (w.layout === 'q8' && gemm?.wgmma) {
    // 8-bit, more rows than gemv_q8_r4 takes: dequant_q8_tile into the scratch, then the same wgmma GEMM (K % 128
    // and N % 8 hold for the q8 layout). From 33 rows, since 8-bit has no mma.sync GEMM between (the generic one
    // dequantizes per element: ~900 tok/s on a 13B prompt); so many rows are never inside a recorded batched step
    // (at most BATCH_GRAPH_ROWS, 16), where growing the weight scratch could not synchronize.
    const plan = planWgmma(gemm.wgmma, c.rows, N, K);
    launchWgmmaSlices(cu, kernels, plan, w, c.y, gemm.half(c.x, c.rows, K, w.perm), c.rows, c.accumulate);
  } else {
    f32();
    kernels.launch('gemm_gptq', { x: Math.ceil(N / 64), y: Math.ceil(c.rows / 64) }, { x: 128 },
      [ptr(c.y), ptr(c.x), i32(c.rows), i32(N), i32(K), i32(c.accumulate ? 1 : 0),
        ptr(w.qweight), ptr(w.scales), ptr(w.qzeros), ptr(w.gIdx), ptr(w.perm), i32(w.groupSize), i32(w.bits)]);
  }
  if (w.bias) {
    const n = c.rows * N;
    kernels.launch('add_bias_f16', { x: Math.min(Math.ceil(n / 256), 4096) }, { x: 256 }, [ptr(c.y), ptr(w.bias), i32(N), i32(n)]);
  }
}
