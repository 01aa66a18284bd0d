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
  step(ids: Int32Array, pos: number): void;
}

function build(b: Backend, table: Uint16Array, norm: Float32Array, wq = randomGptq(dim, dim, 4, 128, true)): Model {
  const emb = b.uploadEmbedding(table, vocab, dim);
  const nw = b.uploadVector(norm);
  const lq = b.uploadLinear(wq);
  const cache = b.allocKvCache(1, maxSeq, heads, headDim);
  const [x, xb, q, k, v, attn] = [0, 1, 2, 3, 4, 5].map(() => poisoned(b, 1, dim));
  const m: Model = {
    b, cache, x, xb, q, k, v, attn,
    step(ids, pos) {
      b.embed(x, emb, ids);
      b.rmsNorm(xb, x, nw, 1e-6, 1);
      b.linear(q, xb, lq, 1);
      b.linear(k, x, lq, 1);
      b.copyRows(v, xb, 0, 1);
      b.rope(q, heads, headDim, pos, 10000, 1);
      b.rope(k, heads, headDim, pos, 10000, 1);
      b.writeKv(cache, 0, pos, k, v, 1);
      b.attention(attn, q, cache, { layer: 0, startPos: pos, heads, kvHeads: heads, headDim }, 1);
      b.addInPlace(attn, x, 1);
    },
  };
  return m;
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
    gpu().runGraph('test-decode', { startPos: pos, ids }, () => g.step(ids, pos));
    c.step(ids, pos);
    const err = normErr(gpu().readActivation(g.attn), c.b.readActivation(c.attn));
    assert.ok(err < 4e-3, `position ${pos}: err ${err}`);
  }
});
