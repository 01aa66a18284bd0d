import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import type { LinearHost, LinearUploadOptions, LinearWeight } from '../../src/backends/backend.js';
import { CpuBackend } from '../../src/backends/cpu/cpuBackend.js';
import {
  gatherRows, groupContiguousPerm, groupOrder, isIdentity, permuteGptqInputs, permuteGptqOutputs,
} from '../../src/formats/actOrder.js';
import { dequantizeGptq, packGptq } from '../../src/formats/gptqPacking.js';
import type { GptqBits, GptqLinearHost } from '../../src/formats/gptqTypes.js';
import { LlamaModel } from '../../src/model/llama.js';
import { FIXTURES } from '../support/paths.js';

/**
 * Orders of act-order layers (src/formats/actOrder.ts): the group order against a plain stable sort,
 * the host permutations of packed layers against dequantize-then-permute, and the model's use of
 * LinearUploadOptions (model/weights.ts) on the CPU through a backend that applies them on the host.
 */

/** Deterministic PRNG (mulberry32), so a failure reproduces. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function shuffled(n: number, r: () => number): Int32Array {
  const p = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}

/** An act-order g_idx: groups of groupSize rows scattered over the input dim (the last one may be short). */
function actOrderGIdx(K: number, groupSize: number, r: () => number): Int32Array {
  const rows = shuffled(K, r);
  const g = new Int32Array(K);
  for (let i = 0; i < K; i++) g[rows[i]] = Math.floor(i / groupSize);
  return g;
}

function randomLayer(K: number, N: number, bits: GptqBits, groupSize: number, seed: number, bias: boolean): GptqLinearHost {
  const r = rng(seed);
  const groups = Math.ceil(K / groupSize), levels = 1 << bits;
  const q = Uint8Array.from({ length: K * N }, () => Math.floor(r() * levels));
  const zeros = Uint8Array.from({ length: groups * N }, () => 1 + Math.floor(r() * (levels - 1)));
  const scales = Float32Array.from({ length: groups * N }, () => (0.5 + r()) * 0.02);
  const gIdx = actOrderGIdx(K, groupSize, r);
  const p = packGptq({ bits, groupSize, inFeatures: K, outFeatures: N, q, zeros, scales, gIdx });
  return {
    kind: 'gptq', inFeatures: K, outFeatures: N, bits, groupSize, groups, actOrder: true, ...p,
    ...(bias ? { bias: Uint16Array.from({ length: N }, () => Math.floor(r() * 0x3c00)) } : {}),
  };
}

test('groupOrder is the stable sort of rows by group; groupContiguousPerm is it when groups are contiguous', () => {
  const r = rng(1);
  for (const [K, gs] of [[256, 32], [384, 128], [200, 64]] as const) {
    const g = actOrderGIdx(K, gs, r);
    const ref = Int32Array.from(Array.from({ length: K }, (_, k) => k).sort((a, b) => g[a] - g[b] || a - b));
    assert.deepEqual(groupOrder(g), ref, `K ${K}, groupsize ${gs}`);
    assert.deepEqual(groupContiguousPerm(g, gs), ref);
    assert.ok(!isIdentity(ref));
  }
  const trivial = Int32Array.from({ length: 256 }, (_, k) => k >> 6);
  assert.ok(isIdentity(groupOrder(trivial)));
  // uneven groups (one row moved from group 1 to group 0), or a group past ceil(K / groupsize): no contiguous order
  const uneven = Int32Array.from(trivial);
  uneven[64] = 0;
  assert.equal(groupContiguousPerm(uneven, 64), null);
  assert.deepEqual(groupOrder(uneven)[64], 64); // still sorted, stable
  const outside = Int32Array.from(trivial);
  outside[0] = 4;
  assert.equal(groupContiguousPerm(outside, 64), null);
  assert.throws(() => groupOrder(Int32Array.of(0, -1)), RangeError);
});

for (const bits of [2, 3, 4, 8] as const) {
  test(`permuteGptqOutputs (${bits}-bit): output j of the result dequantizes to output order[j] of the layer`, () => {
    const K = 256, N = 96, gs = 64;
    const w = randomLayer(K, N, bits, gs, 10 + bits, true);
    const order = shuffled(N, rng(20 + bits));
    const p = permuteGptqOutputs(w, order);
    const W = dequantizeGptq(w), P = dequantizeGptq(p); // [N, K]
    for (let j = 0; j < N; j++) {
      assert.deepEqual(P.subarray(j * K, (j + 1) * K), W.subarray(order[j] * K, (order[j] + 1) * K), `output ${j}`);
      assert.equal(p.bias?.[j], w.bias?.[order[j]]);
    }
    assert.deepEqual(p.gIdx, w.gIdx);
    // without qweight (the CUDA upload gathers it on the device), everything else is the same
    const rest = permuteGptqOutputs(w, order, { qweight: false });
    assert.equal(rest.qweight, w.qweight);
    assert.deepEqual([rest.scales, rest.qzeros, rest.bias], [p.scales, p.qzeros, p.bias]);
    assert.throws(() => permuteGptqOutputs(w, order.subarray(1)), RangeError);
    assert.throws(() => permuteGptqOutputs(w, Int32Array.from(order, (v, i) => (i === 0 ? order[1] : v))), RangeError);
  });

  test(`permuteGptqInputs (${bits}-bit): input i of the result is input order[i]; the group order makes g_idx trivial`, () => {
    const K = 256, N = 64, gs = 32;
    const w = randomLayer(K, N, bits, gs, 30 + bits, false);
    const W = dequantizeGptq(w);
    for (const order of [shuffled(K, rng(40 + bits)), groupOrder(w.gIdx)]) {
      const P = dequantizeGptq(permuteGptqInputs(w, order));
      for (let o = 0; o < N; o++) for (let i = 0; i < K; i++) assert.equal(P[o * K + i], W[o * K + order[i]], `[${o}, ${i}]`);
    }
    const sorted = permuteGptqInputs(w, groupOrder(w.gIdx));
    assert.equal(sorted.actOrder, false);
    assert.deepEqual(sorted.gIdx, Int32Array.from({ length: K }, (_, i) => Math.floor(i / gs)));
  });
}

test('gatherRows permutes a dense [N, K] weight by output', () => {
  const K = 5, N = 7;
  const data = Uint16Array.from({ length: N * K }, (_, i) => i);
  const order = shuffled(N, rng(5));
  const p = gatherRows(data, K, order);
  for (let j = 0; j < N; j++) for (let k = 0; k < K; k++) assert.equal(p[j * K + k], order[j] * K + k);
});

/**
 * A CPU backend that honours LinearUploadOptions by permuting on the host (what the CUDA upload does on
 * the device), and counts them; `flip` applies the inverse order to gate/up instead (a wrong wiring).
 */
class OrderedCpu extends CpuBackend {
  readonly supportsUploadOrder = true;
  inputOrdered = 0;
  outputOrdered = 0;
  constructor(private readonly flip = false) { super({ int8Gemv: false }); }

  override uploadLinear(w: LinearHost, options: LinearUploadOptions = {}): LinearWeight {
    let host = w;
    if (options.inputInGroupOrder) {
      assert.equal(host.kind, 'gptq');
      if (host.kind === 'gptq') host = permuteGptqInputs(host, groupOrder(host.gIdx));
      this.inputOrdered++;
    }
    if (options.outputOrder) {
      let order = options.outputOrder;
      if (this.flip) {
        const inv = new Int32Array(order.length);
        order.forEach((k, i) => { inv[k] = i; });
        order = inv;
      }
      host = host.kind === 'gptq' ? permuteGptqOutputs(host, order) : { ...host, data: gatherRows(host.data, host.inFeatures, order) };
      this.outputOrdered++;
    }
    return super.uploadLinear(host);
  }
}

test('act-order tiny-vicuna on the CPU: gate/up in down\'s group order give the same logits (and a wrong order does not)', async () => {
  const dir = path.join(FIXTURES, 'tiny-vicuna', 'gptq-4bit-128g-actorder');
  const prompt = [1, 319, 13563, 1546, 263, 12758, 5199, 322, 385, 23116];
  const logits = async (b: CpuBackend): Promise<Float32Array> => {
    const m = await LlamaModel.create(dir, { backend: b, contextLength: 32 });
    try {
      await m.forward(prompt, 0);
      return await m.forward([29889], prompt.length); // one decode step after the prompt
    } finally {
      m.dispose();
    }
  };
  const ordered = new OrderedCpu();
  const got = await logits(ordered);
  assert.equal(ordered.inputOrdered, 4, 'every layer\'s down_proj is act-order: fed x in its group order');
  assert.equal(ordered.outputOrdered, 8, 'gate and up of every layer uploaded in down\'s order');
  const want = await logits(new CpuBackend({ int8Gemv: false }));
  let maxErr = 0, maxAbs = 0;
  for (let i = 0; i < want.length; i++) {
    maxErr = Math.max(maxErr, Math.abs(got[i] - want[i]));
    maxAbs = Math.max(maxAbs, Math.abs(want[i]));
  }
  assert.ok(maxErr < 1e-4 * maxAbs, `max |Δlogit| ${maxErr} (max |logit| ${maxAbs})`); // f32 sums in another order
  const wrong = await logits(new OrderedCpu(true));
  let wrongErr = 0;
  for (let i = 0; i < want.length; i++) wrongErr = Math.max(wrongErr, Math.abs(wrong[i] - want[i]));
  assert.ok(wrongErr > 0.1, `the inverse order should change the logits (max |Δ| ${wrongErr})`);
});
