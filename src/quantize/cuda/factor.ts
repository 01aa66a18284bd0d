/**
 * What GPTQ needs from a Hessian before any weight is touched, on the GPU: dead columns, the
 * visiting order (act-order: descending diagonal), the damping, and U, the upper Cholesky factor of
 * the damped H⁻¹ in visiting order. The same for every linear that shares the Hessian (k, v, q;
 * up, gate), so it is computed once per Hessian, not once per linear as gptq.ts does.
 *
 * U as linalg.ts's upperCholeskyOfInverse computes it, in f32 (as GPTQ-for-LLaMa does on the GPU):
 * A = reversed (permuted, damped) H; blocked right-looking Cholesky A = L·Lᵀ in 64-column panels
 * (each diagonal block factored and inverted in shared memory by qz_potrf_diag; the panel below
 * solved as A21·L11⁻ᵀ and the trailing matrix updated by f32 GEMMs); X = L⁻¹ by block rows
 * (X_i,<i = −L_ii⁻¹ · L_i,<i · X_<i,<i); U = X with its element order reversed.
 */
import type { DevicePtr } from '../../backends/cuda/driver.js';
import { f32, i32, ptr, u64 } from '../../backends/cuda/kernelArgs.js';
import { NotPositiveDefiniteError } from '../linalg.js';
import type { QuantizeSettings } from '../types.js';
import { offset, type QuantGpu } from './gpu.js';
import { sgemm } from './ops.js';

const NB = 64;

export interface GptqFactor {
  readonly n: number;
  /** visiting order → column */
  readonly perm: Int32Array;
  /** 1 where H[i,i] = 0 (the weight column is zeroed) */
  readonly dead: Int32Array;
  readonly permDev: DevicePtr;
  readonly deadDev: DevicePtr;
  /** [n, n] f32, upper triangular */
  readonly u: DevicePtr;
}

/** Column order by descending value; ties keep index order (gptq.ts's descendingOrder). */
export function descendingOrder(d: Float64Array): Int32Array {
  const idx = Array.from({ length: d.length }, (_, i) => i);
  idx.sort((a, b) => d[b] - d[a] || a - b);
  return Int32Array.from(idx);
}

/** The factor of H `[n, n]` (device, full, undamped; not modified). Free it with freeFactor. */
export function factorHessian(g: QuantGpu, h: DevicePtr, n: number, settings: Pick<QuantizeSettings, 'actOrder' | 'damp'>): GptqFactor {
  const dDev = g.alloc(n * 4, 'a Hessian diagonal');
  g.launch('qz_diag', { x: Math.ceil(n / 256) }, { x: 256 }, [ptr(dDev), ptr(h), i32(n)]);
  const raw = g.download(new Float32Array(n), dDev);
  const diag = Float64Array.from(raw);
  const dead = new Int32Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    if (diag[i] === 0) {
      dead[i] = 1;
      diag[i] = 1;
    }
    sum += diag[i];
  }
  const perm = settings.actOrder ? descendingOrder(diag) : Int32Array.from({ length: n }, (_, i) => i);
  const damp = settings.damp * (sum / n);
  g.upload(dDev, Float32Array.from(diag));
  const permDev = g.uploadNew(perm, 'the act-order permutation');
  const deadDev = g.uploadNew(dead, 'the dead-column flags');

  const a = g.alloc(n * n * 4, `the factorization workspace (${n}²)`);
  const x = g.alloc(n * n * 4, `the inverse Hessian factor (${n}²)`);
  const panel = g.alloc(n * NB * 4, 'a Cholesky panel');
  const info = g.alloc(4, 'the Cholesky status');
  try {
    g.launch('qz_h_prepare', { x: Math.ceil(n / 256), y: n }, { x: 256 }, [ptr(a), ptr(h), ptr(permDev), ptr(dDev), f32(damp), i32(n)]);
    g.zero(x, n * n * 4);
    g.zero(info, 4);
    cholesky(g, a, x, panel, info, n);
    const status = g.download(new Int32Array(1), info)[0];
    if (status !== 0) {
      throw new NotPositiveDefiniteError(`matrix is not positive definite (pivot ${n - status} of the permuted Hessian is not positive): raise --damp (e.g. 0.1) or use more calibration samples`);
    }
    invertLower(g, a, x, panel, n);
    g.launch('qz_reverse', { x: Math.min(Math.ceil((n * n) / 2 / 256), 65535) }, { x: 256 }, [ptr(x), u64(n * n)]);
  } catch (e) {
    for (const p of [x, permDev, deadDev]) g.free(p);
    throw e;
  } finally {
    for (const p of [a, panel, info, dDev]) g.free(p);
  }
  return { n, perm, dead, permDev, deadDev, u: x };
}

export function freeFactor(g: QuantGpu, f: GptqFactor): void {
  for (const p of [f.u, f.permDev, f.deadDev]) g.free(p);
}

/** a ← L (lower; the upper triangle outside the diagonal blocks keeps stale values), x's diagonal blocks ← their inverses. */
function cholesky(g: QuantGpu, a: DevicePtr, x: DevicePtr, panel: DevicePtr, info: DevicePtr, n: number): void {
  const at = (base: DevicePtr, r: number, c: number): DevicePtr => offset(base, (r * n + c) * 4);
  for (let k0 = 0; k0 < n; k0 += NB) {
    const kb = Math.min(NB, n - k0);
    g.launch('qz_potrf_diag', { x: 1 }, { x: 256 }, [ptr(a), ptr(x), i32(n), i32(k0), i32(kb), ptr(info)]);
    const rest = n - k0 - kb;
    if (rest === 0) break;
    // L21 = A21 · L11⁻ᵀ into the panel, the trailing A22 −= L21·L21ᵀ (lower tiles), then L21 into place
    sgemm(g, { c: panel, ldc: NB, a: at(a, k0 + kb, k0), lda: n, b: at(x, k0, k0), ldb: n, transB: true, m: rest, n: kb, k: kb });
    sgemm(g, { c: at(a, k0 + kb, k0 + kb), ldc: n, a: panel, lda: NB, b: panel, ldb: NB, transB: true, m: rest, n: rest, k: kb, alpha: -1, beta: 1, lower: true });
    g.launch('qz_copy2d', { x: 1, y: rest }, { x: NB }, [ptr(at(a, k0 + kb, k0)), i32(n), ptr(panel), i32(NB), i32(rest), i32(kb)]);
  }
}

/** x ← L⁻¹ (lower, upper zero), given its diagonal blocks. `t` holds NB·n floats. */
function invertLower(g: QuantGpu, a: DevicePtr, x: DevicePtr, t: DevicePtr, n: number): void {
  const at = (base: DevicePtr, r: number, c: number): DevicePtr => offset(base, (r * n + c) * 4);
  for (let i0 = NB; i0 < n; i0 += NB) {
    const kb = Math.min(NB, n - i0);
    // T = L[i0:, :i0] · X[:i0, :i0] (X lower: each tile's sum starts at its first column)
    sgemm(g, { c: t, ldc: n, a: at(a, i0, 0), lda: n, b: x, ldb: n, m: kb, n: i0, k: i0, bLower: true });
    // X[i0:, :i0] = −X_ii · T
    sgemm(g, { c: at(x, i0, 0), ldc: n, a: at(x, i0, i0), lda: n, b: t, ldb: n, m: kb, n: i0, k: kb, alpha: -1 });
  }
}
