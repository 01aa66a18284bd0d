/**
 * GPTQ for one linear on the GPU, given its Hessian's factor (factor.ts): the device twin of
 * gptq.ts's gptqQuantize, same semantics (dead columns, act-order, groups found at each group
 * start from the error-updated weights or fixed up front with static groups, one group for
 * groupSize −1), in f32. Blocks of at most 128 columns: qz_gptq_block runs GPTQ's column loop with
 * one thread per output row and the block's U in shared memory; the lazy update of the columns
 * after the block, W[:, i2:] −= Errᵀ·U[i1:i2, i2:], is one f32 GEMM.
 * Block boundaries follow gptq.ts's rule that a group's parameters see fully updated weights:
 * groups up to 128 columns lie inside a block; a wider group starts a block (its columns past the
 * block are read from the weights, which then hold every earlier block's update).
 */
import type { DevicePtr } from '../../backends/cuda/driver.js';
import { i32, ptr } from '../../backends/cuda/kernelArgs.js';
import { quantGrid } from '../quantizer.js';
import type { QuantizedLinear, QuantizeSettings } from '../types.js';
import type { GptqFactor } from './factor.js';
import { SHARED, offset, type QuantGpu } from './gpu.js';
import { sgemm } from './ops.js';

const MAX_BLOCK = 128;
const ROWS_PER_BLOCK = 64;

/** End of the block that starts at column i1. */
export function blockEnd(i1: number, cols: number, gs: number, dynamicGroups: boolean): number {
  if (!dynamicGroups) return Math.min(i1 + MAX_BLOCK, cols);
  if (gs <= MAX_BLOCK) return Math.min(i1 + Math.floor(MAX_BLOCK / gs) * gs, cols);
  return Math.min(i1 + MAX_BLOCK, (Math.floor(i1 / gs) + 1) * gs, cols);
}

/**
 * Quantizes W `[rows, cols]` (fp16 on the device, original column order) and, when `dequantTo` is
 * given, writes the dequantized weights there as fp16 (the same buffer as `w16` is fine: it is read
 * before it is written).
 */
export function gptqLinearGpu(g: QuantGpu, w16: DevicePtr, rows: number, cols: number, f: GptqFactor, settings: QuantizeSettings,
  dequantTo?: DevicePtr): QuantizedLinear {
  if (f.n !== cols) throw new RangeError(`factor of ${f.n} columns for a linear of ${cols}`);
  const grid = quantGrid(settings.bits, settings.sym);
  const grouped = settings.groupSize !== -1;
  const gs = grouped ? settings.groupSize : cols;
  const groups = Math.ceil(cols / gs);
  const mode = !grouped ? 0 : settings.staticGroups ? 2 : 1;
  const sym = settings.sym ? 1 : 0;

  const bufs: DevicePtr[] = [];
  const alloc = (bytes: number, what: string): DevicePtr => {
    const p = g.alloc(bytes, what);
    bufs.push(p);
    return p;
  };
  try {
    const wp = alloc(rows * cols * 4, 'GPTQ weights (f32)');
    const err = alloc(MAX_BLOCK * rows * 4, 'GPTQ block errors');
    const q = alloc(Math.ceil((rows * cols) / 4) * 4, 'quantized levels');
    const scales = alloc(groups * rows * 4, 'scales');
    const zeros = alloc(Math.ceil((groups * rows) / 4) * 4, 'zero points');
    const loss = alloc(rows * 4, 'losses');
    g.zero(loss, rows * 4);

    const params = (useDead: number, count: number): void => {
      g.launch('qz_group_params', { x: Math.ceil(rows / 256), y: count }, { x: 256 },
        [ptr(scales), ptr(zeros), ptr(w16), ptr(f.deadDev), i32(useDead), i32(rows), i32(cols), i32(gs), i32(grid.maxq), i32(sym)]);
    };
    // one group: from the weights before dead columns are zeroed (as GPTQ-for-LLaMa); static: after
    if (mode === 0) params(0, 1);
    else if (mode === 2) params(1, groups);
    g.launch('qz_w_prepare', { x: Math.ceil(cols / 256), y: rows }, { x: 256 }, [ptr(wp), ptr(w16), ptr(f.permDev), ptr(f.deadDev), i32(rows), i32(cols)]);

    for (let i1 = 0; i1 < cols;) {
      const i2 = blockEnd(i1, cols, gs, mode === 1);
      g.launch('qz_gptq_block', { x: Math.ceil(rows / ROWS_PER_BLOCK) }, { x: ROWS_PER_BLOCK },
        [ptr(wp), ptr(f.u), ptr(err), ptr(q), ptr(scales), ptr(zeros), ptr(loss), ptr(f.permDev),
          i32(rows), i32(cols), i32(i1), i32(i2), i32(gs), i32(mode), i32(grid.maxq), i32(sym)], SHARED.qz_gptq_block);
      if (i2 < cols) {
        sgemm(g, { c: offset(wp, i2 * 4), ldc: cols, a: err, lda: rows, transA: true, b: offset(f.u, (i1 * cols + i2) * 4), ldb: cols,
          m: rows, n: cols - i2, k: i2 - i1, alpha: -1, beta: 1 });
      }
      i1 = i2;
    }

    const gIdx = new Int32Array(cols);
    for (let j = 0; j < cols; j++) {
      const orig = f.perm[j];
      gIdx[orig] = Math.floor((mode === 2 ? orig : j) / gs);
    }
    if (dequantTo) {
      const gDev = alloc(cols * 4, 'g_idx');
      g.upload(gDev, gIdx);
      g.launch('qz_dequant_h', { x: Math.ceil(cols / 256), y: rows }, { x: 256 },
        [ptr(dequantTo), ptr(q), ptr(scales), ptr(zeros), ptr(gDev), i32(rows), i32(cols)]);
    }
    const qHost = new Uint8Array(rows * cols);
    const zHost = new Uint8Array(groups * rows);
    const sHost = new Float32Array(groups * rows);
    const lHost = new Float32Array(rows);
    g.download(qHost, q);
    g.download(zHost, zeros);
    g.download(sHost, scales);
    g.download(lHost, loss);
    let total = 0;
    for (let o = 0; o < rows; o++) total += lHost[o];
    return { inFeatures: cols, outFeatures: rows, bits: settings.bits, groupSize: gs, groups, q: qHost, zeros: zHost, scales: sHost, gIdx, loss: total / 2 };
  } finally {
    for (const p of bufs) g.free(p);
  }
}
