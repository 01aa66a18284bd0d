import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Backend, LinearHost } from '../../src/backends/backend.js';
import { CpuBackend, PlainCpuBackend } from '../../src/backends/cpu/cpuBackend.js';
import { randomDense, randomGptq, randomVector, rng } from '../../bench/cpuWeights.js';
import type { GptqBits } from '../../src/formats/gptq.js';

/**
 * The fast CPU backend (wasm SIMD kernels, threads) against the plain reference, op by op on
 * random inputs, compared by normalized error ‖a − b‖ / ‖b‖; outputs are poisoned first.
 */
function normErr(a: Float32Array, b: Float32Array): number {
  let num = 0, den = 0;
  for (let i = 0; i < b.length; i++) { num += (a[i] - b[i]) ** 2; den += b[i] ** 2; }
  return Math.sqrt(num / Math.max(den, 1e-30));
}

function runLinear(b: Backend, w: LinearHost, x: Float32Array, rows: number, add?: Float32Array): Float32Array {
  const weight = b.uploadLinear(w);
  const xa = b.allocActivation(rows, w.inFeatures);
  const out = b.allocActivation(rows, w.outFeatures);
  b.writeActivation(xa, x);
  if (add) {
    b.writeActivation(out, add);
    if (b.linearAdd) b.linearAdd(out, xa, weight, rows);
    else {
      const tmp = b.allocActivation(rows, w.outFeatures);
      b.linear(tmp, xa, weight, rows);
      b.addInPlace(out, tmp, rows);
    }
  } else {
    b.writeActivation(out, new Float32Array(rows * w.outFeatures).fill(NaN));
    b.linear(out, xa, weight, rows);
  }
  return b.readActivation(out, rows);
}

const plain = new PlainCpuBackend();
const fast1 = new CpuBackend({ threads: 1 });
const fast2 = new CpuBackend({ threads: 2 });
const fast3 = new CpuBackend({ threads: 3 });
/** the f32 GEMV (int8 activations off), for the f32 path's own check */
const fastF32 = new CpuBackend({ threads: 2, int8Gemv: false });
const TOL = 2e-5;
/**
 * GPTQ GEMV (1–3 rows) quantizes x to int8 per block (step Δ = max|x|/127): rounding errors are
 * uniform in ±Δ/2, rms Δ/√12, against rms(x) = max|x|/√3 for these uniform inputs — a relative
 * error of 1/254 ≈ 0.004 in x, which the weights (q − z, roughly zero-mean) carry over into the
 * output as about the same normalized error. 1e-2 leaves a 2.5× margin.
 */
const TOL_I8 = 1e-2;

test('fast CPU backend uses the wasm SIMD kernels here', () => {
  assert.match(fast2.name, /wasm simd, 2 threads/);
});

test('dense linear: GEMV and GEMM (1, 3, 4, 9 rows, bias, accumulate) match the plain kernels; 1/2/3 threads identical', () => {
  const rand = rng(7);
  for (const [inF, outF, bias] of [[64, 32, false], [256, 128, true], [200, 2056, false], [1024, 512, true]] as const) {
    const w = randomDense(inF, outF, rand, bias);
    for (const rows of [1, 3, 4, 9]) {
      const x = randomVector(rows * inF, rand);
      const ref = runLinear(plain, w, x, rows);
      const got = runLinear(fast1, w, x, rows);
      assert.ok(normErr(got, ref) < TOL, `dense ${inF}x${outF} rows ${rows}: err ${normErr(got, ref)}`);
      assert.deepEqual(runLinear(fast2, w, x, rows), got, '2 threads differ from 1');
      assert.deepEqual(runLinear(fast3, w, x, rows), got, '3 threads differ from 1');
      const acc = randomVector(rows * outF, rand);
      const refAdd = ref.map((v, i) => v + acc[i]);
      assert.ok(normErr(runLinear(fast2, w, x, rows, acc), refAdd) < TOL, 'linearAdd');
    }
  }
});

for (const bits of [2, 3, 4, 8] as GptqBits[]) {
  test(`GPTQ ${bits}-bit linear, group sizes -1/32/64/128, act-order and not, GEMV and GEMM, 1/2/3 threads`, () => {
    const rand = rng(100 + bits);
    for (const groupSize of [-1, 32, 64, 128]) {
      for (const actOrder of [false, true]) {
        const inF = 256, outF = groupSize === 64 ? 96 : 160;
        const w = randomGptq({ bits, groupSize, inFeatures: inF, outFeatures: outF, actOrder, bias: groupSize === 32 }, rand);
        for (const rows of [1, 2, 5, 8]) {
          const x = randomVector(rows * inF, rand);
          const ref = runLinear(plain, w, x, rows);
          const got = runLinear(fast1, w, x, rows);
          const what = `${bits}-bit g${groupSize}${actOrder ? ' act-order' : ''} rows ${rows}`;
          const tol = rows < 4 ? TOL_I8 : TOL;
          assert.ok(normErr(got, ref) < tol, `${what}: err ${normErr(got, ref)}`);
          if (rows < 4) {
            const f32 = runLinear(fastF32, w, x, rows);
            assert.ok(normErr(f32, ref) < TOL, `${what}: f32 GEMV err ${normErr(f32, ref)}`);
          }
          assert.deepEqual(runLinear(fast2, w, x, rows), got, `${what}: 2 threads differ from 1`);
          assert.deepEqual(runLinear(fast3, w, x, rows), got, `${what}: 3 threads differ from 1`);
          const acc = randomVector(rows * outF, rand);
          const refAdd = ref.map((v, i) => v + acc[i]);
          assert.ok(normErr(runLinear(fast2, w, x, rows, acc), refAdd) < tol, `${what}: linearAdd`);
        }
      }
    }
  });
}

test('GPTQ at a larger shape (4-bit g128 act-order, 1024×2048) runs threaded and matches', () => {
  const rand = rng(3);
  const w = randomGptq({ bits: 4, groupSize: 128, inFeatures: 1024, outFeatures: 2048, actOrder: true }, rand);
  for (const rows of [1, 6]) {
    const x = randomVector(rows * 1024, rand);
    const ref = runLinear(plain, w, x, rows);
    const got = runLinear(fast2, w, x, rows);
    assert.ok(normErr(got, ref) < (rows < 4 ? TOL_I8 : TOL), `rows ${rows}: err ${normErr(got, ref)}`);
    assert.deepEqual(runLinear(fast1, w, x, rows), got);
  }
});

test('layers whose shape the kernels do not take fall back to the plain path', () => {
  const rand = rng(11);
  const w = randomDense(64, 36, rand, true);
  const x = randomVector(2 * 64, rand);
  assert.ok(normErr(runLinear(fast2, w, x, 2), runLinear(plain, w, x, 2)) < TOL);
  const plainOnly = new CpuBackend({ simd: false });
  assert.equal(plainOnly.name, 'cpu');
  assert.ok(normErr(runLinear(plainOnly, w, x, 2), runLinear(plain, w, x, 2)) < 1e-7);
});

test.after(() => { fast1.dispose(); fast2.dispose(); fast3.dispose(); fastF32.dispose(); });
