/**
 * Typed launchers of the quantizer's kernels (kernels/quantize_*.cu, attention_flash.cu): grid
 * sizes and the preconditions each kernel states, checked here so a bad call throws instead of
 * reading out of bounds.
 */
import type { DevicePtr } from '../../backends/cuda/driver.js';
import { f32, i32, ptr, u64 } from '../../backends/cuda/kernelArgs.js';
import { flashGrid, flashShared } from '../../backends/cuda/attentionLaunch.js';
import { SHARED, type QuantGpu } from './gpu.js';

/** Blocks for a grid-stride elementwise kernel of 256 threads. */
function strideBlocks(n: number): number {
  return Math.max(1, Math.min(Math.ceil(n / 256), 65535));
}

function check(ok: boolean, what: string): void {
  if (!ok) throw new RangeError(`quantize kernel precondition: ${what}`);
}

/**
 * C[m, n] (= or +=) Σ_k A[m, k]·B[n, k] on tensor cores: A [M, lda], B [N, ldb] fp16, C [M, ldc] f32.
 * `lower`: only tiles on or below the diagonal (Gram matrices; M = N).
 */
export function gemmF16(g: QuantGpu, c: DevicePtr, ldc: number, a: DevicePtr, lda: number, b: DevicePtr, ldb: number,
  m: number, n: number, k: number, accumulate: boolean, lower = false): void {
  check(k % 8 === 0 && lda % 8 === 0 && ldb % 8 === 0 && n % 2 === 0 && ldc % 2 === 0, `gemm_f16 K ${k}, lda ${lda}, ldb ${ldb} multiples of 8, N ${n} and ldc ${ldc} even`);
  check(lda >= k && ldb >= k && ldc >= n, 'gemm_f16 leading dimensions');
  check(a % 16n === 0n && b % 16n === 0n && c % 8n === 0n, 'gemm_f16 operand alignment');
  check(!lower || m === n, 'gemm_f16 lower needs M = N');
  if (m === 0 || n === 0) return;
  g.launch('qz_gemm_f16', { x: Math.ceil(n / 128), y: Math.ceil(m / 128) }, { x: 256 },
    [ptr(c), i32(ldc), ptr(a), i32(lda), ptr(b), i32(ldb), i32(m), i32(n), i32(k), i32(accumulate ? 1 : 0), i32(lower ? 1 : 0)], SHARED.qz_gemm_f16);
}

export interface SgemmArgs {
  readonly c: DevicePtr; readonly ldc: number;
  readonly a: DevicePtr; readonly lda: number; readonly transA?: boolean;
  readonly b: DevicePtr; readonly ldb: number; readonly transB?: boolean;
  readonly m: number; readonly n: number; readonly k: number;
  readonly alpha?: number; readonly beta?: number;
  /** skip tiles wholly above the diagonal */
  readonly lower?: boolean;
  /** op(B) is lower triangular: each tile's K loop starts at its first column */
  readonly bLower?: boolean;
}

/** C = alpha·op(A)·op(B) + beta·C in f32 (beta 0 never reads C). */
export function sgemm(g: QuantGpu, s: SgemmArgs): void {
  if (s.m === 0 || s.n === 0) return;
  check(s.m <= 65535 * 64, 'sgemm M');
  g.launch('qz_sgemm', { x: Math.ceil(s.n / 64), y: Math.ceil(s.m / 64) }, { x: 256 },
    [ptr(s.c), i32(s.ldc), ptr(s.a), i32(s.lda), i32(s.transA ? 1 : 0), ptr(s.b), i32(s.ldb), i32(s.transB ? 1 : 0),
      i32(s.m), i32(s.n), i32(s.k), f32(s.alpha ?? 1), f32(s.beta ?? 0), i32(s.lower ? 1 : 0), i32(s.bLower ? 1 : 0)]);
}

/** out [rows, dim] fp16 = rmsnorm(x [rows, dim] f32) · w */
export function rmsNormHalf(g: QuantGpu, out: DevicePtr, x: DevicePtr, w: DevicePtr, eps: number, rows: number, dim: number): void {
  g.launch('qz_rmsnorm_h', { x: rows }, { x: 256 }, [ptr(out), ptr(x), ptr(w), f32(eps), i32(dim)]);
}

/** Rotary embedding in place on x [rows, stride] f32 (heads × headDim used), positions 0..rows−1. */
export function rope(g: QuantGpu, x: DevicePtr, rows: number, heads: number, headDim: number, theta: number, stride: number): void {
  const n = rows * (headDim / 2);
  g.launch('qz_rope', { x: Math.ceil(n / 256) }, { x: 256 }, [ptr(x), i32(rows), i32(heads), i32(headDim), f32(theta), i32(stride)]);
}

export function toHalf(g: QuantGpu, out: DevicePtr, x: DevicePtr, n: number): void {
  g.launch('qz_to_half', { x: strideBlocks(n) }, { x: 256 }, [ptr(out), ptr(x), u64(n)]);
}

export function toFloat(g: QuantGpu, out: DevicePtr, x: DevicePtr, n: number): void {
  g.launch('qz_to_float', { x: strideBlocks(n) }, { x: 256 }, [ptr(out), ptr(x), u64(n)]);
}

/** out fp16 = silu(gate)·up, n values */
export function swigluHalf(g: QuantGpu, out: DevicePtr, gate: DevicePtr, up: DevicePtr, n: number): void {
  g.launch('qz_swiglu_h', { x: strideBlocks(n) }, { x: 256 }, [ptr(out), ptr(gate), ptr(up), u64(n)]);
}

/** out [n, ldo] fp16 = in [rows, n]ᵀ, zeros in columns rows..colsOut−1 */
export function transposeHalf(g: QuantGpu, out: DevicePtr, ldo: number, x: DevicePtr, rows: number, n: number, colsOut: number): void {
  check(colsOut <= ldo && colsOut >= rows, 'transpose columns');
  g.launch('qz_transpose_h', { x: Math.ceil(n / 32), y: Math.ceil(colsOut / 32) }, { x: 32, y: 8 },
    [ptr(out), i32(ldo), ptr(x), i32(rows), i32(n), i32(colsOut)]);
}

/**
 * Causal self-attention of one sample at positions 0..rows−1 (attn_flash_<D>):
 * out [rows, heads·D] f32, q [rows, heads·D] f32 (roped), k, v [rows, kvHeads·D] fp16 (k roped).
 */
export function attention(g: QuantGpu, out: DevicePtr, q: DevicePtr, k: DevicePtr, v: DevicePtr, rows: number, heads: number, kvHeads: number, headDim: number): void {
  check(headDim === 64 || headDim === 128, `attention head size ${headDim} (64 or 128)`);
  check(heads % kvHeads === 0, 'attention heads a multiple of kv heads');
  g.launch(`attn_flash_${headDim}`, flashGrid(rows, heads), { x: 128 },
    [ptr(out), ptr(q), ptr(k), ptr(v), ptr(null), i32(0), i32(rows), i32(heads), i32(kvHeads), f32(Math.LOG2E / Math.sqrt(headDim))], flashShared(headDim));
}
