import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Backend, LinearHost } from '../../src/backends/backend.js';
import { CpuBackend, INT8_GEMV_MAX_ROWS, PlainCpuBackend } from '../../src/backends/cpu/cpuBackend.js';
import { randomGptq, randomVector, rng } from '../../bench/cpuWeights.js';
import type { GptqBits } from '../../src/formats/gptq.js';
import { LlamaModel } from '../../src/model/llama.js';
import { EMBEDDED_MODEL } from '../support/paths.js';

/**
 * The multi-row int8 GEMV (2..INT8_GEMV_MAX_ROWS rows of a batched decode step in one pass over
 * the weights) against the one-row int8 GEMV run on each row alone — which it must equal bit for
 * bit, so batching changes no output — and against the plain f32 reference within the int8
 * tolerance of cpuFast.test.ts. Outputs are poisoned first. Prompt rows (outside decodeStep) keep
 * the f32 GEMM from 4 rows.
 */
function normErr(a: Float32Array, b: Float32Array): number {
  let num = 0, den = 0;
  for (let i = 0; i < b.length; i++) { num += (a[i] - b[i]) ** 2; den += b[i] ** 2; }
  return Math.sqrt(num / Math.max(den, 1e-30));
}

/**
 * `rows` rows of x through `b`. The activations are wider than the layer's input (`pad` extra
 * columns) so strided rows are exercised; `add` switches to linearAdd on top of it.
 */
function runLinear(b: Backend, w: LinearHost, x: Float32Array, rows: number, add?: Float32Array, pad = 0, decode = true): Float32Array {
  const weight = b.uploadLinear(w);
  const K = w.inFeatures, N = w.outFeatures;
  const xa = b.allocActivation(rows, K + pad);
  const out = b.allocActivation(rows, N + pad);
  const xw = new Float32Array(rows * (K + pad)).fill(1e3);
  for (let t = 0; t < rows; t++) xw.set(x.subarray(t * K, (t + 1) * K), t * (K + pad));
  b.writeActivation(xa, xw);
  const init = new Float32Array(rows * (N + pad)).fill(NaN);
  if (add) for (let t = 0; t < rows; t++) init.set(add.subarray(t * N, (t + 1) * N), t * (N + pad));
  b.writeActivation(out, init);
  const run = (): void => {
    if (add) {
      assert.ok(b.linearAdd);
      b.linearAdd(out, xa, weight, rows);
    } else b.linear(out, xa, weight, rows);
  };
  if (decode && b.decodeStep) b.decodeStep(run);
  else run();
  const all = b.readActivation(out, rows);
  const got = new Float32Array(rows * N);
  for (let t = 0; t < rows; t++) got.set(all.subarray(t * (N + pad), t * (N + pad) + N), t * N);
  return got;
}

/** Each row alone through the one-row path. */
function rowByRow(b: Backend, w: LinearHost, x: Float32Array, rows: number, add?: Float32Array): Float32Array {
  const K = w.inFeatures, N = w.outFeatures, out = new Float32Array(rows * N);
  for (let t = 0; t < rows; t++) {
    out.set(runLinear(b, w, x.subarray(t * K, (t + 1) * K), 1, add?.subarray(t * N, (t + 1) * N)), t * N);
  }
  return out;
}

const plain = new PlainCpuBackend();
const fast1 = new CpuBackend({ threads: 1 });
const fast2 = new CpuBackend({ threads: 2 });
const fast3 = new CpuBackend({ threads: 3 });
/** the f32 GEMM tolerance and the int8 GEMV one of cpuFast.test.ts (see there for the 1e-2) */
const TOL = 2e-5, TOL_I8 = 1e-2;

test('the int8 GEMV takes up to 8 rows', () => {
  assert.equal(INT8_GEMV_MAX_ROWS, 8);
});

for (const bits of [2, 3, 4, 8] as GptqBits[]) {
  test(`GPTQ ${bits}-bit, 2..8 rows at once equal each row alone (bit for bit) and the plain reference; 1/2/3 threads`, () => {
    const rand = rng(500 + bits);
    for (const [groupSize, actOrder, inF, outF] of [[128, false, 256, 160], [-1, false, 384, 96], [32, true, 256, 64],
      [64, true, 512, 96]] as const) {
      const w = randomGptq({ bits, groupSize, inFeatures: inF, outFeatures: outF, actOrder, bias: groupSize === 32 }, rand);
      for (let rows = 2; rows <= INT8_GEMV_MAX_ROWS; rows++) {
        const what = `${bits}-bit g${groupSize}${actOrder ? ' act-order' : ''} ${inF}x${outF} rows ${rows}`;
        const x = randomVector(rows * inF, rand);
        const ref = runLinear(plain, w, x, rows);
        const got = runLinear(fast1, w, x, rows, undefined, 8);
        assert.ok(got.every(Number.isFinite), `${what}: a row was not written`);
        assert.deepEqual(got, rowByRow(fast1, w, x, rows), `${what}: differs from the rows run alone`);
        assert.ok(normErr(got, ref) < TOL_I8, `${what}: err ${normErr(got, ref)}`);
        assert.deepEqual(runLinear(fast2, w, x, rows), got, `${what}: 2 threads differ from 1`);
        assert.deepEqual(runLinear(fast3, w, x, rows), got, `${what}: 3 threads differ from 1`);
        const acc = randomVector(rows * outF, rand);
        const added = runLinear(fast2, w, x, rows, acc, 8);
        assert.deepEqual(added, rowByRow(fast2, w, x, rows, acc), `${what}: linearAdd differs from the rows alone`);
        assert.ok(normErr(added, ref.map((v, i) => v + acc[i])) < TOL_I8, `${what}: linearAdd err`);
      }
    }
  });
}

test('a 7B-width layer (4-bit g128, 4096×1024) threaded: 8 rows equal each row alone', () => {
  const rand = rng(9);
  const w = randomGptq({ bits: 4, groupSize: 128, inFeatures: 4096, outFeatures: 1024, actOrder: false }, rand);
  const x = randomVector(8 * 4096, rand);
  const got = runLinear(fast2, w, x, 8);
  assert.deepEqual(got, rowByRow(fast2, w, x, 8));
  assert.ok(normErr(got, runLinear(plain, w, x, 8)) < TOL_I8);
});

test('prompt rows from 4, decode steps past 8 rows, and int8Gemv off run the f32 GEMM (plain-reference tolerance)', () => {
  const rand = rng(21);
  const w = randomGptq({ bits: 4, groupSize: 128, inFeatures: 256, outFeatures: 64, actOrder: true }, rand);
  const f32 = new CpuBackend({ threads: 2, int8Gemv: false });
  try {
    for (const rows of [4, 8, 9, 12]) {
      const x = randomVector(rows * 256, rand);
      const ref = runLinear(plain, w, x, rows);
      assert.ok(normErr(runLinear(fast2, w, x, rows, undefined, 0, false), ref) < TOL, `prompt rows ${rows}`);
      if (rows > INT8_GEMV_MAX_ROWS) assert.ok(normErr(runLinear(fast2, w, x, rows), ref) < TOL, `decode rows ${rows}`);
      else assert.ok(normErr(runLinear(fast2, w, x, rows), ref) > TOL, `decode rows ${rows} should take the int8 GEMV`);
    }
    const x = randomVector(5 * 256, rand);
    assert.ok(normErr(runLinear(f32, w, x, 5), runLinear(plain, w, x, 5)) < TOL, 'f32 backend, 5 rows');
  } finally {
    f32.dispose();
  }
});

test('decodeBatch over 8 slots (default CPU backend: one int8 GEMV pass per linear) equals each sequence decoded alone', async () => {
  const prompts = [[1, 835, 5618], [1, 450], [1, 319, 29871, 29941, 29889], [1, 910], [1, 6204, 278, 1735], [1, 22, 33, 44, 55, 66],
    [1, 7], [1, 100, 200, 300]].map((p) => p.map((id) => id % 4096));
  const batched = await LlamaModel.create(EMBEDDED_MODEL, { backend: new CpuBackend({ threads: 2 }), sequences: 8, contextLength: 32 });
  const solo = await LlamaModel.create(EMBEDDED_MODEL, { backend: new CpuBackend({ threads: 2 }), contextLength: 32 });
  try {
    const next = await Promise.all(prompts.map((p, i) => batched.forwardArgmax(p, 0, i)));
    const out = await batched.decodeBatch(prompts.map((p, i) => ({ slot: i, token: next[i], pos: p.length })));
    for (let i = 0; i < prompts.length; i++) {
      await solo.forward(prompts[i], 0);
      const alone = await solo.forward([next[i]], prompts[i].length);
      const got = out[i];
      assert.ok(got instanceof Float32Array);
      // the linears are bit-identical; attention over the row's own cache may round differently
      let diff = 0, scale = 0;
      for (let j = 0; j < alone.length; j++) { diff = Math.max(diff, Math.abs(got[j] - alone[j])); scale = Math.max(scale, Math.abs(alone[j])); }
      assert.ok(diff / scale <= 1e-4, `slot ${i}: relative error ${(diff / scale).toExponential(2)}`);
    }
  } finally {
    batched.dispose();
    solo.dispose();
  }
});

test.after(() => { fast1.dispose(); fast2.dispose(); fast3.dispose(); });
