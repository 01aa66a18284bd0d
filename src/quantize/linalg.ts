import { QllamaError } from '../errors.js';

/**
 * Dense symmetric linear algebra for GPTQ, in Float64 on row-major `[n, n]` matrices. Float64
 * because the inverse Hessian of a layer with nearly collinear inputs is badly conditioned and
 * the whole error feedback runs through it; the matrices are at most `[in, in]`, so it is cheap.
 */

/** The (damped) Hessian is not positive definite: Cholesky hit a non-positive pivot. */
export class NotPositiveDefiniteError extends QllamaError {}

/** Lower L with A = L·Lᵀ (Cholesky–Banachiewicz: row by row, so inner loops are contiguous dots). */
export function cholesky(a: Float64Array, n: number): Float64Array {
  const l = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    for (let j = 0; j <= i; j++) {
      const rj = j * n;
      let s = a[ri + j];
      for (let k = 0; k < j; k++) s -= l[ri + k] * l[rj + k];
      if (i === j) {
        if (!(s > 0)) {
          throw new NotPositiveDefiniteError(`matrix is not positive definite (pivot ${i} is ${s}): raise --damp (e.g. 0.1) or use more calibration samples`);
        }
        l[ri + i] = Math.sqrt(s);
      } else {
        l[ri + j] = s / l[rj + j];
      }
    }
  }
  return l;
}

/** X = L⁻¹ for lower-triangular L (row i of X = (eᵢ − Σ_{k<i} L[i,k]·X[k]) / L[i,i]). */
export function invertLower(l: Float64Array, n: number): Float64Array {
  const x = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    for (let k = 0; k < i; k++) {
      const c = l[ri + k];
      if (c === 0) continue;
      const rk = k * n;
      for (let j = 0; j <= k; j++) x[ri + j] -= c * x[rk + j];
    }
    x[ri + i] += 1;
    const inv = 1 / l[ri + i];
    for (let j = 0; j <= i; j++) x[ri + j] *= inv;
  }
  return x;
}

/** A⁻¹ from A's lower Cholesky factor: A⁻¹ = L⁻ᵀ·L⁻¹ (torch.cholesky_inverse). */
export function choleskyInverse(l: Float64Array, n: number): Float64Array {
  const x = invertLower(l, n); // [n, n] lower
  const out = new Float64Array(n * n);
  // out = Xᵀ X as a sum of rank-1 updates by rows of X (contiguous); fill the lower half, mirror.
  for (let k = 0; k < n; k++) {
    const rk = k * n;
    for (let a = 0; a <= k; a++) {
      const xa = x[rk + a];
      if (xa === 0) continue;
      const ra = a * n;
      for (let b = 0; b <= a; b++) out[ra + b] += xa * x[rk + b];
    }
  }
  for (let a = 0; a < n; a++) for (let b = 0; b < a; b++) out[b * n + a] = out[a * n + b];
  return out;
}

/** Inverse of a symmetric positive definite matrix. */
export function inverseSpd(a: Float64Array, n: number): Float64Array {
  return choleskyInverse(cholesky(a, n), n);
}

/**
 * Upper U with H⁻¹ = Uᵀ·U, the factor GPTQ runs on (GPTQ-for-LLaMa computes it as
 * `cholesky(cholesky_inverse(cholesky(H)), upper=True)`): row i of U holds, scaled, how
 * quantizing column i must move the columns after it.
 * Computed in one factorization instead of three: with P the order-reversing permutation and
 * P·H·P = L·Lᵀ, H⁻¹ = (P·L⁻ᵀ·P)(P·L⁻¹·P), and P·L⁻¹·P is upper triangular with a positive
 * diagonal, so it is U (the Cholesky factor is unique). n³/3 flops instead of about 5n³/6.
 */
export function upperCholeskyOfInverse(h: Float64Array, n: number): Float64Array {
  const r = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) r[i * n + j] = h[(n - 1 - i) * n + (n - 1 - j)];
  const x = invertLower(cholesky(r, n), n);
  const u = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = i; j < n; j++) u[i * n + j] = x[(n - 1 - i) * n + (n - 1 - j)];
  return u;
}
