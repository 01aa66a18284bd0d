/**
 * The Hopper prefill GEMM (dequant_q4_nk_rp4 + gemm_wgmma_256, used for ≥ WGMMA_MIN_ROWS rows on sm_90)
 * against the CPU backend and against the mma.sync path, outputs poisoned first, compared by normalized
 * error; and a ≥ 1024-token prompt of the embedded model giving the same logits on both paths.
 * Skipped, saying why, without a GPU or on a GPU other than sm_90.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CpuBackend } from '../../src/backends/cpu/cpuBackend.js';
import type { Backend, LinearHost } from '../../src/backends/backend.js';
import type { PrefillKernels } from '../../src/backends/cuda/cudaBackend.js';
import { WGMMA_MIN_ROWS } from '../../src/backends/cuda/linearLaunch.js';
import { LlamaModel } from '../../src/model/llama.js';
import { EMBEDDED_MODEL } from '../support/paths.js';
import { gpu, input, normErr, poisoned, randn, randomGptq, skipNoGpu } from './support.js';

const skip: false | string = skipNoGpu ||
  (gpu().wgmmaFits ? false : `${gpu().deviceName} is not a compute capability 9.0 GPU (or lacks cuTensorMapEncodeTiled): no wgmma GEMM to test`);
const cpu = new CpuBackend({ int8Gemv: false });
/** fp16 x and fp16-rounded weights against the CPU's f32 (as ops.test.ts's GEMM checks) */
const HALF_TOL = 4e-3;
/** the same fp16 products on both GPU paths: only the f32 summation order differs */
const PATH_TOL = 1e-4;

/** y = x Wᵀ and acc + x Wᵀ (linearAdd) on the GPU in prefill mode `mode`. */
function run(mode: PrefillKernels, w: LinearHost, rows: number, x: Float32Array, resid: Float32Array): [Float32Array, Float32Array] {
  const g = gpu(), before = g.prefillKernels;
  g.prefillKernels = mode;
  try {
    const lw = g.uploadLinear(w);
    const out = poisoned(g, rows, w.outFeatures);
    g.linear(out, input(g, rows, w.inFeatures, x), lw, rows);
    const acc = input(g, rows, w.outFeatures, resid);
    g.linearAdd(acc, input(g, rows, w.inFeatures, x), lw, rows);
    return [g.readActivation(out), g.readActivation(acc)];
  } finally {
    g.prefillKernels = before;
  }
}

function runCpu(b: Backend, w: LinearHost, rows: number, x: Float32Array): Float32Array {
  const out = poisoned(b, rows, w.outFeatures);
  b.linear(out, input(b, rows, w.inFeatures, x), b.uploadLinear(w), rows);
  return b.readActivation(out);
}

test('wgmma GEMM against the CPU: partial tiles, gs 128 / 32, act-order, linearAdd', { skip }, () => {
  // [K, N, group size, act-order, rows]: N 640 and 264 leave a partial 256-wide tile, 1100 rows a partial 128-row one
  const cases: [number, number, number, boolean, number[]][] = [
    [1024, 640, 128, true, [WGMMA_MIN_ROWS, 1100]], [512, 264, 32, false, [1100]], [768, 1024, 128, false, [1024]],
  ];
  for (const [k, n, gs, ao, rowsList] of cases) {
    const w = randomGptq(k, n, 4, gs, ao);
    for (const rows of rowsList) {
      const x = randn(rows * k), resid = randn(rows * n);
      const [g, gAdd] = run('wgmma', w, rows, x, resid);
      const c = runCpu(cpu, w, rows, x);
      const name = `wgmma q4 ${k}x${n} g${gs}${ao ? ' act-order' : ''} rows=${rows}`;
      assert.ok(normErr(g, c) < HALF_TOL, `${name}: err ${normErr(g, c)}`);
      const want = Float32Array.from(c, (v, i) => v + resid[i]);
      assert.ok(normErr(gAdd, want) < HALF_TOL, `${name} linearAdd: err ${normErr(gAdd, want)}`);
    }
  }
});

test('wgmma GEMM against the mma.sync GEMM at 13B-like sizes', { skip }, () => {
  const cases: [number, number, number, boolean, number][] = [[5120, 5120, 128, true, 1100], [5120, 1000, 128, false, 1024]];
  for (const [k, n, gs, ao, rows] of cases) {
    const w = randomGptq(k, n, 4, gs, ao);
    const x = randn(rows * k), resid = randn(rows * n);
    const [g, gAdd] = run('wgmma', w, rows, x, resid);
    const [m, mAdd] = run('mma', w, rows, x, resid);
    const name = `wgmma vs mma q4 ${k}x${n} g${gs}${ao ? ' act-order' : ''} rows=${rows}`;
    assert.ok(normErr(g, m) < PATH_TOL, `${name}: err ${normErr(g, m)}`);
    assert.ok(normErr(gAdd, mAdd) < PATH_TOL, `${name} linearAdd: err ${normErr(gAdd, mAdd)}`);
  }
});

test('tiny-vicuna: a 1100-token prompt gives the same logits with the wgmma and the mma.sync GEMM', { skip }, async () => {
  const rows = 1100;
  assert.ok(rows >= WGMMA_MIN_ROWS);
  const prompt = Array.from({ length: rows }, (_, i) => (i === 0 ? 1 : 3 + ((i * 7919) % 4000)));
  const model = await LlamaModel.create(EMBEDDED_MODEL, { backend: gpu(), contextLength: 1280 });
  const before = gpu().prefillKernels;
  try {
    gpu().prefillKernels = 'wgmma';
    const lw = await model.forward(prompt, 0);
    gpu().prefillKernels = 'mma';
    const lm = await model.forward(prompt, 0);
    assert.ok(normErr(lw, lm) < 1e-3, `prompt logits wgmma vs mma: err ${normErr(lw, lm)}`);
  } finally {
    gpu().prefillKernels = before;
  }
});
