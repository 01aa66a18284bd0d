/**
 * Graph replay: a decode-like step captured once and replayed at new positions and token ids
 * must give what the CPU backend computes op by op.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Activation, Backend, KvCache } from '../../src/backends/backend.js';
import { CpuBackend } from '../../src/backends/cpu/cpuBackend.js';
import { gpu, normErr, poisoned, randHalf, randn, randomGptq, skipNoGpu } from './support.js';

const vocab = 500, dim = 256, heads = 2, headDim = 128, maxSeq = 64;

interface Model {
  readonly b: Backend; readonly cache: KvCache;
  readonly x: Activation; readonly xb: Activation; readonly q: Activation; readonly k: Activation; readonly v: Activation; readonly attn: Activation;
  /** embedding, norm, q/k/v and rope */
  front(ids: Int32Array, pos: number): void;
  /** KV write, attention, residual add */
  back(pos: number): void;
}

function build(b: Backend, table: Uint16Array, norm: Float32Array, wq = randomGptq(dim, dim, 4, 128, true)): Model {
  const emb = b.uploadEmbedding(table, vocab, dim);
  const nw = b.uploadVector(norm);
  const lq = b.uploadLinear(wq);
  const cache = b.allocKvCache(1, maxSeq, heads, headDim);
  const [x, xb, q, k, v, attn] = [0, 1, 2, 3, 4, 5].map(() => poisoned(b, 1, dim));
  return {
    b, cache, x, xb, q, k, v, attn,
    front(ids, pos) {
      b.embed(x, emb, ids);
      b.rmsNorm(xb, x, nw, 1e-6, 1);
      b.linear(q, xb, lq, 1);
      b.linear(k, x, lq, 1);
      b.copyRows(v, xb, 0, 1);
      b.rope(q, heads, headDim, pos, 10000, 1);
      b.rope(k, heads, headDim, pos, 10000, 1);
    },
    back(pos) {
      b.writeKv(cache, 0, pos, k, v, 1);
      b.attention(attn, q, cache, { layer: 0, startPos: pos, heads, kvHeads: heads, headDim }, 1);
      b.addInPlace(attn, x, 1);
    },
  };
}

test('runGraph: capture once, replay at every position', { skip: skipNoGpu }, () => {
  const table = randHalf(vocab * dim), norm = randn(dim);
  const wq = randomGptq(dim, dim, 4, 128, true);
  const g = build(gpu(), table, norm, wq);
  const c = build(new CpuBackend({ int8Gemv: false }), table, norm, wq);
  const graph = gpu().runGraph;
  assert.ok(graph, 'the CUDA backend has runGraph');
  for (let pos = 0; pos < 40; pos++) {
    const ids = Int32Array.from([Math.floor(Math.random() * vocab)]);
    gpu().runGraph('test-decode', { startPos: pos, ids }, () => { g.front(ids, pos); g.back(pos); });
    c.front(ids, pos);
    // q and k come from the one-row GEMV on int8-quantized x (gemv_q4.cu: ~5e-3 normalized error)
    const [gq, gk, gv] = [g.q, g.k, g.v].map((a) => gpu().readActivation(a));
    const errQ = normErr(gq, c.b.readActivation(c.q));
    assert.ok(errQ < 2e-2, `position ${pos}: q err ${errQ}`);
    // the rest of the step on identical inputs (softmax would amplify the int8 error): the CPU
    // attends with the GPU's q, k, v, so the KV cache, attention and residual add are checked tightly
    c.b.writeActivation(c.q, gq);
    c.b.writeActivation(c.k, gk);
    c.b.writeActivation(c.v, gv);
    c.back(pos);
    const err = normErr(gpu().readActivation(g.attn), c.b.readActivation(c.attn));
    assert.ok(err < 4e-3, `position ${pos}: err ${err}`);
  }
});
