import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Backend } from '../../src/backends/backend.js';
import { CpuBackend, PlainCpuBackend } from '../../src/backends/cpu/cpuBackend.js';
import { generateAll } from '../../src/generate/generator.js';
import type { TextCodec } from '../../src/generate/textCodec.js';
import { hostArgmax, type DecodeRow } from '../../src/model/batch.js';
import { SlotView } from './batchSupport.js';
import { LlamaModel } from '../../src/model/llama.js';
import { EMBEDDED_MODEL } from '../support/paths.js';
import { firstNearTie, fixtureDir, loadReference, VARIANTS } from '../support/reference.js';

/**
 * Batched decode (LlamaModel.decodeBatch) against the single-sequence path it must reproduce, and
 * against the fixtures' independent greedy references.
 */

const PROMPTS = [
  [1, 835, 5618, 29901, 1724, 338, 278],
  [1, 450, 4955],
  [1, 319, 29871, 29941, 29889, 1094, 1576, 263, 1532, 310, 278, 3186],
  [1, 910],
  [1, 6204, 278, 1735, 29892, 278],
].map((p) => p.map((id) => id % 4096)); // the embedded vocabulary has 4096 ids

/** max |a − b| / max |b| */
function relativeError(a: Float32Array, b: Float32Array): number {
  let diff = 0, scale = 0;
  for (let i = 0; i < b.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

/**
 * Prefills PROMPTS[0..n) into slots 0..n-1 of a batched model (different lengths, so the rows sit
 * at different positions), runs two batched decode steps, and compares every row's logits with
 * the same sequence run alone through `forward` on a one-slot model.
 */
async function compareWithSolo(n: number, makeBackend: () => Backend): Promise<void> {
  const batched = await LlamaModel.create(EMBEDDED_MODEL, { backend: makeBackend(), sequences: n, contextLength: 64 });
  const solo = await LlamaModel.create(EMBEDDED_MODEL, { backend: makeBackend(), contextLength: 64 });
  try {
    const prompts = PROMPTS.slice(0, n);
    const next: number[] = [];
    // prefill in reverse order, so slot i's cache is not simply the last one written
    for (let i = n - 1; i >= 0; i--) next[i] = await batched.forwardArgmax(prompts[i], 0, i);
    const expected: Float32Array[][] = [];
    for (let i = 0; i < n; i++) {
      const l0 = await solo.forward(prompts[i], 0);
      assert.equal(hostArgmax(l0), next[i]);
      const steps: Float32Array[] = [];
      let tok = next[i];
      for (let s = 0; s < 2; s++) {
        const l = await solo.forward([tok], prompts[i].length + s);
        steps.push(l);
        tok = hostArgmax(l);
      }
      expected.push(steps);
    }
    const toks = [...next];
    for (let s = 0; s < 2; s++) {
      // rows in an order other than slot order
      const rows: DecodeRow[] = prompts.map((p, i) => ({ slot: i, token: toks[i], pos: p.length + s })).reverse();
      const out = await batched.decodeBatch(rows);
      assert.equal(out.length, n);
      for (let t = 0; t < n; t++) {
        const i = rows[t].slot;
        const logits = out[t];
        assert.ok(logits instanceof Float32Array, 'the default pick is the logits row');
        assert.equal(logits.length, batched.vocabSize);
        const err = relativeError(logits, expected[i][s]);
        assert.ok(err <= 1e-4, `step ${s}, slot ${i} (pos ${rows[t].pos}): relative error ${err.toExponential(2)} > 1e-4`);
        toks[i] = hostArgmax(logits);
      }
    }
  } finally {
    batched.dispose();
    solo.dispose();
  }
}

test('decodeBatch over 3 slots at different positions equals each sequence alone (plain backend)', async () => {
  await compareWithSolo(3, () => new PlainCpuBackend());
});

test('decodeBatch over 3 slots equals each sequence alone (default CPU backend: int8 GEMV per row)', async () => {
  await compareWithSolo(3, () => new CpuBackend({ threads: 2 }));
});

test('decodeBatch over 5 slots equals each sequence alone (f32 CPU backend: batched GEMM vs GEMV)', async () => {
  await compareWithSolo(5, () => new CpuBackend({ threads: 2, int8Gemv: false }));
});

test('decodeBatch checks its rows: slot range, duplicate slots, context', async () => {
  const model = await LlamaModel.create(EMBEDDED_MODEL, { sequences: 2, contextLength: 16 });
  try {
    await model.forward([1, 2, 3], 0, 1);
    await assert.rejects(model.decodeBatch([{ slot: 2, token: 5, pos: 3 }]), /slot 2 does not exist/);
    await assert.rejects(model.decodeBatch([{ slot: 1, token: 5, pos: 3 }, { slot: 1, token: 6, pos: 4 }]), /slot 1 appears twice/);
    await assert.rejects(model.decodeBatch([{ slot: 0, token: 5, pos: 16 }]), { name: 'ContextOverflowError' });
    await assert.rejects(model.forward([1], 0, 2), /slot 2 does not exist/);
    assert.deepEqual(await model.decodeBatch([]), []);
  } finally {
    model.dispose();
  }
});

for (const variant of VARIANTS) {
  test(`tiny-vicuna-4k/${variant}: greedy ids of the reference prompts decoded as one batch match the reference`, async () => {
    const ref = Object.values(loadReference('tiny-vicuna-4k').reference_generations[variant]);
    const model = await LlamaModel.create(fixtureDir('tiny-vicuna-4k', variant), { sequences: ref.length, backend: new CpuBackend({ threads: 2 }) });
    const solo = await LlamaModel.create(fixtureDir('tiny-vicuna-4k', variant), { backend: new CpuBackend({ threads: 2 }) });
    try {
      const ids = ref.map(() => [] as number[]);
      const next = await Promise.all(ref.map((r, i) => model.forwardArgmax(r.input_ids, 0, i)));
      const steps = Math.max(...ref.map((r) => r.greedy_ids.length));
      for (let s = 0; s < steps; s++) {
        ref.forEach((_, i) => ids[i].push(next[i]));
        if (s + 1 === steps) break;
        const out = await model.decodeBatch(ref.map((r, i) => ({ slot: i, token: next[i], pos: r.input_ids.length + s, pick: { kind: 'argmax' } })));
        out.forEach((o, i) => {
          assert.equal(typeof o, 'number', 'an argmax pick returns an id');
          next[i] = o as number;
        });
      }
      for (let i = 0; i < ref.length; i++) {
        const { greedy_ids, top2_gaps } = ref[i];
        const upTo = firstNearTie(top2_gaps);
        assert.deepEqual(ids[i].slice(0, upTo), greedy_ids.slice(0, upTo), `prompt ${i}: batched greedy ids differ from the reference before its first near tie (step ${upTo})`);
        // 3 rows stay on the per-row GEMV the single-sequence decode uses: the whole run is the same
        const alone = await generateAll(new SlotView(solo, 0), IDS_ONLY, { promptIds: ref[i].input_ids, maxNewTokens: greedy_ids.length, stopAtEos: false, sampling: { temperature: 0 } });
        assert.deepEqual(ids[i], alone.tokenIds, `prompt ${i}: batched greedy ids differ from the same prompt decoded alone`);
      }
    } finally {
      model.dispose();
      solo.dispose();
    }
  });
}

/** A codec that renders nothing: these tests compare token ids only. */
const IDS_ONLY: TextCodec = {
  bosId: 1,
  eosId: 2,
  encode: () => [],
  decode: () => '',
  createStreamDecoder: () => ({ push: () => '', flush: () => '' }),
};
