/**
 * Caller-arranged feature orders on the CUDA upload (LinearUploadOptions, linearUpload.ts) and their one
 * user: an act-order down_proj reading its x linearly because gate and up were uploaded with their
 * outputs in down's group order (model/weights.ts; CudaBackend.supportsUploadOrder, which
 * $QLLAMA_CUDA_DOWN_ORDER=0 turns off). The model must compute the same thing with it on and off:
 *   - ops: outputOrder gives y in that order (u32_gather_cols on qweight, host gathers of scales,
 *     qzeros and bias), inputInGroupOrder with x fed in the group order gives the unordered result, in
 *     the one-row GEMV, the GEMMs and the generic layout;
 *   - the embedded act-order tiny-vicuna: same greedy ids and logits, with permuted-x copies
 *     ($QLLAMA_CUDA_PERMX) off and on, since both rearrange down's input;
 *   - a synthetic act-order model with head size 128 and a prompt long enough for the prefill GEMM.
 * Logits agree up to float-atomic order in the split-K sums.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import type { LinearHost, LinearUploadOptions } from '../../src/backends/backend.js';
import type { CudaLinear } from '../../src/backends/cuda/linearUpload.js';
import { groupOrder } from '../../src/formats/actOrder.js';
import { LlamaModel } from '../../src/model/llama.js';
import { synthesize } from '../../src/synth/synth.js';
import { EMBEDDED_MODEL } from '../support/paths.js';
import { gpu, input, normErr, poisoned, randHalf, randn, randomGptq, skipNoGpu } from './support.js';

const TOL = 2e-3;
/**
 * the same products, summed in the same order but for float atomics (and, in the generic layout, rows
 * permuted within a split): f32 roundings only; a wrong permutation gives errors of order 1
 */
const OP_TOL = 1e-4;
const work = mkdtempSync(path.join(tmpdir(), 'qllama-down-order-'));
after(() => rmSync(work, { recursive: true, force: true }));

function shuffled(n: number): Int32Array {
  const p = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}

/** y = x Wᵀ on the GPU of w uploaded with `options`. */
function linear(w: LinearHost, options: LinearUploadOptions | undefined, x: Float32Array, rows: number): Float32Array {
  const b = gpu();
  const out = poisoned(b, rows, w.outFeatures);
  b.linear(out, input(b, rows, w.inFeatures, x), b.uploadLinear(w, options), rows);
  return b.readActivation(out);
}

/** x [rows, K] with each row's columns in `order`. */
function permuteCols(x: Float32Array, rows: number, order: Int32Array): Float32Array {
  const K = order.length, out = new Float32Array(x.length);
  for (let t = 0; t < rows; t++) for (let i = 0; i < K; i++) out[t * K + i] = x[t * K + order[i]];
  return out;
}

test('uploadLinear outputOrder and inputInGroupOrder: GEMV, GEMMs, generic layout, dense', { skip: skipNoGpu }, () => {
  const cases: [number, number, 2 | 3 | 4 | 8, number][] = [
    [768, 256, 4, 128], [512, 384, 4, 64], [256, 512, 4, 32], [1408, 512, 4, 128], // q4 layout
    [256, 96, 3, 32], [512, 384, 2, 64], // widened to the q4 layout
    [512, 384, 8, 64], [1280, 256, 8, 128], // q8 layout
    [200, 96, 4, 40], [224, 96, 3, 32], // generic layout
  ];
  for (const [K, N, bits, gs] of cases) {
    const w = randomGptq(K, N, bits, gs, true);
    const name = `${bits}-bit ${K}x${N} g${gs}`;
    for (const rows of [1, 3, 70]) {
      const x = randn(rows * K);
      const plain = linear(w, undefined, x, rows);
      const order = shuffled(N);
      const got = linear(w, { outputOrder: order }, x, rows);
      const want = permuteCols(plain, rows, order);
      assert.ok(normErr(got, want) < OP_TOL, `${name} rows ${rows} outputOrder: err ${normErr(got, want)}`);
      const xg = permuteCols(x, rows, groupOrder(w.gIdx));
      const inOrder = linear(w, { inputInGroupOrder: true }, xg, rows);
      assert.ok(normErr(inOrder, plain) < OP_TOL, `${name} rows ${rows} inputInGroupOrder: err ${normErr(inOrder, plain)}`);
      const bothWays = linear(w, { inputInGroupOrder: true, outputOrder: order }, xg, rows);
      assert.ok(normErr(bothWays, want) < OP_TOL, `${name} rows ${rows} both: err ${normErr(bothWays, want)}`);
    }
    const lw = gpu().uploadLinear(w, { inputInGroupOrder: true }) as CudaLinear;
    assert.ok(lw.kind === 'gptq' && lw.perm === null && lw.invPerm === null, `${name}: x in the group order is read linearly`);
  }
  const d: LinearHost = { kind: 'dense', inFeatures: 256, outFeatures: 96, data: randHalf(96 * 256, 0.05), bias: randHalf(96) };
  const order = shuffled(96);
  for (const rows of [1, 5]) {
    const x = randn(rows * 256);
    const want = permuteCols(linear(d, undefined, x, rows), rows, order);
    const got = linear(d, { outputOrder: order }, x, rows);
    assert.ok(normErr(got, want) < OP_TOL, `dense rows ${rows}: err ${normErr(got, want)}`);
  }
  assert.throws(() => gpu().uploadLinear(d, { inputInGroupOrder: true }), RangeError);
  assert.throws(() => gpu().uploadLinear(d, { outputOrder: order.subarray(1) }), RangeError);
});

interface Run { readonly prefill: Float32Array; readonly ids: number[]; readonly logits: Float32Array[] }

/** Loads `dir` with the down order on or off, then a prefill and `steps` decode steps (captured graph). */
async function run(dir: string, ordered: boolean, permX: boolean, prompt: number[], steps: number, next: (l: Float32Array, i: number) => number): Promise<Run> {
  const g = gpu();
  const before = { ordered: g.supportsUploadOrder, permX: g.gemvPermuteX };
  try {
    g.supportsUploadOrder = ordered;
    g.gemvPermuteX = permX;
    const model = await LlamaModel.create(dir, { backend: g, contextLength: prompt.length + steps + 8 });
    const ids: number[] = [], logits: Float32Array[] = [];
    const prefill = await model.forward(prompt, 0);
    let l = prefill;
    for (let i = 0; i < steps; i++) {
      ids.push(next(l, i));
      l = await model.forward([ids[i]], prompt.length + i);
      logits.push(l);
    }
    return { prefill, ids, logits };
  } finally {
    g.supportsUploadOrder = before.ordered;
    g.gemvPermuteX = before.permX;
  }
}

function assertSame(a: Run, b: Run, what: string): void {
  assert.ok(normErr(b.prefill, a.prefill) < TOL, `${what}: prefill logits err ${normErr(b.prefill, a.prefill)}`);
  b.logits.forEach((x, i) => {
    const err = normErr(x, a.logits[i]);
    assert.ok(err < TOL, `${what}: step ${i} logits err ${err}`);
  });
}

function argmax(x: Float32Array): number {
  let best = 0;
  for (let j = 1; j < x.length; j++) if (x[j] > x[best]) best = j;
  return best;
}

test('tiny-vicuna (act-order): same greedy ids and logits with gate/up in down\'s order on and off, permuted x off and on', { skip: skipNoGpu }, async () => {
  const prompt = [1, 319, 13563, 1546, 263, 12758, 5199, 322, 385, 23116].map((t) => t % 4096); // its vocabulary: 4096
  for (const permX of [false, true]) {
    const off = await run(EMBEDDED_MODEL, false, permX, prompt, 24, (l) => argmax(l));
    const on = await run(EMBEDDED_MODEL, true, permX, prompt, 24, (l) => argmax(l));
    assert.deepEqual(on.ids, off.ids, `permuted x ${permX}: greedy ids`);
    assertSame(off, on, `tiny-vicuna, permuted x ${permX}`);
  }
});

test('synthetic act-order model, head size 128, 1100-token prompt: same logits with the down order on and off', { skip: skipNoGpu }, async () => {
  const shape = { hidden: 512, ffn: 1408, layers: 3, heads: 4, vocab: 4096 };
  const dir = path.join(work, 'ao');
  await synthesize({ shape, bits: 4, groupSize: 128, actOrder: true, out: dir, seed: 5 });
  const prompt = Array.from({ length: 1100 }, (_, i) => (i * 7919 + 13) % shape.vocab);
  const next = (_l: Float32Array, i: number): number => (i * 104729 + 7) % shape.vocab;
  const off = await run(dir, false, false, prompt, 12, next);
  const on = await run(dir, true, false, prompt, 12, next);
  assertSame(off, on, 'synthetic act-order');
});
