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
  const l = a.slice(0, n * n);
  choleskyInPlace(l, n);
  for (let i = 0; i < n; i++) l.fill(0, i * n + i + 1, (i + 1) * n);
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
  return upperCholeskyOfInverseInPlace(h.slice(), n);
}

/**
 * upperCholeskyOfInverse overwriting `a` (returned): no n² temporaries, which matters for the
 * widest linear (a 13B down_proj's 13824² Hessian is 1.5 GB in Float64). Reverse in place,
 * factor in place, invert the factor in place (row i of L⁻¹ needs only row i of L and the rows
 * of L⁻¹ above it), reverse back — the reversal turns the lower factor into the upper one.
 */
export function upperCholeskyOfInverseInPlace(a: Float64Array, n: number): Float64Array {
  reverseInPlace(a, n);
  choleskyInPlace(a, n);
  const row = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    row.fill(0, 0, i + 1);
    for (let k = 0; k < i; k++) {
      const c = a[ri + k];
      if (c === 0) continue;
      const rk = k * n;
      for (let j = 0; j <= k; j++) row[j] -= c * a[rk + j];
    }
    row[i] += 1;
    const inv = 1 / a[ri + i];
    for (let j = 0; j <= i; j++) a[ri + j] = row[j] * inv;
    a.fill(0, ri + i + 1, ri + n);
  }
  reverseInPlace(a, n);
  return a;
}

/** Lower Cholesky factor over `a`'s lower triangle (the upper triangle is left as it was). */
function choleskyInPlace(a: Float64Array, n: number): void {
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    for (let j = 0; j <= i; j++) {
      const rj = j * n;
      let s = a[ri + j];
      for (let k = 0; k < j; k++) s -= a[ri + k] * a[rj + k];
      if (i === j) {
        if (!(s > 0)) {
          throw new NotPositiveDefiniteError(`matrix is not positive definite (pivot ${i} is ${s}): raise --damp (e.g. 0.1) or use more calibration samples`);
        }
        a[ri + i] = Math.sqrt(s);
      } else {
        a[ri + j] = s / a[rj + j];
      }
    }
  }
}

/** a[i, j] ↔ a[n−1−i, n−1−j]: the element order of the whole buffer reversed. */
function reverseInPlace(a: Float64Array, n: number): void {
  a.subarray(0, n * n).reverse();
}
