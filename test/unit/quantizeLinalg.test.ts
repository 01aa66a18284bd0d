import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cholesky, choleskyInverse, inverseSpd, NotPositiveDefiniteError, upperCholeskyOfInverse } from '../../src/quantize/linalg.js';
import { HessianAccumulator, reconstructionError } from '../../src/quantize/hessian.js';
import { lcg } from './quantizeSupport.js';

const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string): void => {
  assert.equal(a.length, b.length, what);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) <= tol, `${what}[${i}]: ${a[i]} vs ${b[i]}`);
};

test('Cholesky of the textbook 3×3 matrix', () => {
  const a = Float64Array.from([4, 12, -16, 12, 37, -43, -16, -43, 98]);
  close(cholesky(a, 3), [2, 0, 0, 6, 1, 0, -8, 5, 3], 1e-12, 'L');
});

test('inverse via Cholesky of [[4,2],[2,3]] is [[3,-2],[-2,4]]/8', () => {
  const a = Float64Array.from([4, 2, 2, 3]);
  close(inverseSpd(a, 2), [3 / 8, -2 / 8, -2 / 8, 4 / 8], 1e-15, 'A⁻¹');
  close(choleskyInverse(Float64Array.from([2, 0, 1, Math.SQRT2]), 2), [3 / 8, -2 / 8, -2 / 8, 4 / 8], 1e-15, 'from L');
});

test('upper Cholesky of H⁻¹: upper triangular, Uᵀ·U = H⁻¹, equal to the three-step route GPTQ takes', () => {
  const n = 7;
  const h = randomSpd(n, 3);
  const u = upperCholeskyOfInverse(h, n);
  const inv = inverseSpd(h, n);
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) assert.equal(u[i * n + j], 0);
  const utu = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) for (let k = 0; k < n; k++) utu[i * n + j] += u[k * n + i] * u[k * n + j];
  close(utu, inv, 1e-9, 'UᵀU');
  const viaThree = cholesky(inv, n); // lower of H⁻¹; its transpose is the upper factor
  const upper = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) upper[j * n + i] = viaThree[i * n + j];
  close(u, upper, 1e-9, 'U');
});

test('a matrix that is not positive definite is a named error that says to raise --damp', () => {
  assert.throws(() => cholesky(Float64Array.from([1, 2, 2, 1]), 2), (e: unknown) => e instanceof NotPositiveDefiniteError && /--damp/.test(e.message));
});

test('Hessian is 2/n·ΣXᵀX over samples and gives ‖(W−Q)X‖² exactly', () => {
  const cols = 5, rows = 3, seq = 6;
  const rnd = lcg(11);
  const xs = [0, 1].map(() => Float32Array.from({ length: seq * cols }, () => rnd() - 0.5));
  const acc = new HessianAccumulator(cols);
  for (const x of xs) acc.add(x, seq);
  const h = acc.hessian();
  const naive = new Float64Array(cols * cols);
  for (const x of xs) for (let t = 0; t < seq; t++) for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) naive[i * cols + j] += (2 / 2) * x[t * cols + i] * x[t * cols + j];
  close(h, naive, 1e-6, 'H');
  const w = Float32Array.from({ length: rows * cols }, () => rnd());
  const q = Float32Array.from(w, (v) => Math.round(v * 4) / 4);
  let direct = 0;
  for (const x of xs) {
    for (let t = 0; t < seq; t++) {
      for (let o = 0; o < rows; o++) {
        let d = 0;
        for (let i = 0; i < cols; i++) d += (w[o * cols + i] - q[o * cols + i]) * x[t * cols + i];
        direct += d * d;
      }
    }
  }
  const viaH = reconstructionError(w, q, h, rows, cols, acc.nsamples);
  assert.ok(Math.abs(viaH - direct) < 1e-6 * Math.max(1, direct), `${viaH} vs ${direct}`);
});

function randomSpd(n: number, seed: number): Float64Array {
  const rnd = lcg(seed);
  const b = Array.from({ length: n * n }, () => rnd() - 0.5);
  const h = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
    for (let k = 0; k < n; k++) h[i * n + j] += b[i * n + k] * b[j * n + k];
    if (i === j) h[i * n + j] += 0.1;
  }
  return h;
}
