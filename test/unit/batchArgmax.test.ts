/**
 * The batched greedy pick without a GPU: Backend.argmaxRows on the CPU backends against an
 * independent reference (ties, -Infinity, NaN rows: test/support/argmaxCases.ts), and
 * LlamaModel.decodeBatch taking one argmaxRows per step for its greedy rows (no host logits read
 * when every row is greedy; mixed steps too), with the ids the logits rows give.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Activation } from '../../src/backends/backend.js';
import { CpuBackend, PlainCpuBackend } from '../../src/backends/cpu/cpuBackend.js';
import { argmax as samplerArgmax } from '../../src/generate/sampler.js';
import { hostArgmax, type DecodeRow, type RowPick, type RowResult } from '../../src/model/batch.js';
import { LlamaModel } from '../../src/model/llama.js';
import { argmaxCases, referenceArgmax } from '../support/argmaxCases.js';
import { EMBEDDED_MODEL } from '../support/paths.js';

test('argmaxRows on the CPU backends: lowest id on ties, NaN skipped, 0 for rows with nothing above -Infinity', () => {
  for (const b of [new PlainCpuBackend(), new CpuBackend({ threads: 1 })]) {
    try {
      for (const cols of [1, 7, 4096, 32000, 32001, 40000]) {
        const rows = 2 * 11 + 3; // every kind twice, structural ties at two different places
        const { logits, kinds } = argmaxCases(rows, cols, cols);
        const x = b.allocActivation(rows + 2, cols); // more rows than asked for: only `rows` are read
        b.writeActivation(x, logits);
        const ids = b.argmaxRows(x, rows);
        assert.equal(ids.length, rows);
        for (let r = 0; r < rows; r++) {
          const row = logits.subarray(r * cols, (r + 1) * cols);
          const want = referenceArgmax(row);
          assert.equal(ids[r], want, `${b.name}, cols ${cols}, row ${r} (${kinds[r]})`);
          assert.equal(hostArgmax(row), want, `hostArgmax, cols ${cols}, row ${r} (${kinds[r]})`);
          // the Sampler's greedy choice follows the same rule, NaN rows included
          assert.equal(samplerArgmax(row), want, `sampler, cols ${cols}, row ${r} (${kinds[r]})`);
        }
        assert.deepEqual(b.argmaxRows(x, 0), new Int32Array(0));
        assert.throws(() => b.argmaxRows(x, rows + 3), RangeError);
      }
    } finally {
      b.dispose();
    }
  }
});

/** The plain backend, counting what the model asks of it during a decode step. */
class CountingBackend extends PlainCpuBackend {
  argmaxRowsCalls: number[] = [];
  reads = 0;
  override argmaxRows(x: Activation, rows: number): Int32Array {
    this.argmaxRowsCalls.push(rows);
    return super.argmaxRows(x, rows);
  }
  override readActivation(src: Activation, rows?: number): Float32Array {
    this.reads++;
    return super.readActivation(src, rows);
  }
  reset(): void {
    this.argmaxRowsCalls = [];
    this.reads = 0;
  }
}

const PROMPTS = [[1, 835, 5618, 29901, 1724], [1, 450, 4955], [1, 319, 29871, 29941, 29889, 1094, 1576], [1, 910]].map((p) => p.map((id) => id % 4096));

test('decodeBatch: one argmaxRows per step for the greedy rows (all greedy, mixed, none), ids equal to the logits rows\' argmax', async () => {
  const counted = new CountingBackend();
  const model = await LlamaModel.create(EMBEDDED_MODEL, { backend: counted, sequences: PROMPTS.length, contextLength: 32 });
  // the same steps with every row asking for its logits (and, where asked, the per-row fallback with no argmaxRows)
  const twinBackend = new PlainCpuBackend();
  Object.defineProperty(twinBackend, 'argmaxRows', { value: undefined });
  const twin = await LlamaModel.create(EMBEDDED_MODEL, { backend: twinBackend, sequences: PROMPTS.length, contextLength: 32 });
  try {
    assert.equal(twinBackend.argmaxRows, undefined);
    const next: number[] = [];
    for (let i = 0; i < PROMPTS.length; i++) {
      next[i] = await model.forwardArgmax(PROMPTS[i], 0, i);
      assert.equal(await twin.forwardArgmax(PROMPTS[i], 0, i), next[i]);
    }
    const argmax: RowPick = { kind: 'argmax' }, logits: RowPick = { kind: 'logits' };
    const sample: RowPick = { kind: 'sample', sampling: { temperature: 0.7, topK: 0, topP: 1, minP: 0, u: 0.5 } };
    // rows in an order other than slot order; the step's picks, and what argmaxRows should see
    const steps: { order: number[]; picks: RowPick[]; twinPicks: RowPick[]; calls: number[]; reads: number }[] = [
      { order: [2, 0, 3, 1], picks: [argmax, argmax, argmax, argmax], twinPicks: [logits, logits, logits, logits], calls: [4], reads: 0 },
      { order: [1, 3, 0, 2], picks: [argmax, logits, sample, argmax], twinPicks: [logits, argmax, logits, logits], calls: [4], reads: 1 },
      { order: [0, 1, 2], picks: [logits, sample, logits], twinPicks: [argmax, logits, logits], calls: [], reads: 1 },
      { order: [3], picks: [argmax], twinPicks: [logits], calls: [1], reads: 0 },
    ];
    const pos = PROMPTS.map((p) => p.length);
    for (const [s, step] of steps.entries()) {
      const rows: DecodeRow[] = step.order.map((slot, t) => ({ slot, token: next[slot], pos: pos[slot], pick: step.picks[t] }));
      counted.reset();
      const out = await model.decodeBatch(rows);
      assert.deepEqual(counted.argmaxRowsCalls, step.calls, `step ${s}: argmaxRows calls (rows each)`);
      assert.equal(counted.reads, step.reads, `step ${s}: host reads of the logits`);
      const want = await twin.decodeBatch(rows.map((r, t) => ({ ...r, pick: step.twinPicks[t] })));
      for (let t = 0; t < rows.length; t++) {
        const slot = rows[t].slot, got: RowResult = out[t], ref: RowResult = want[t];
        const wantId = typeof ref === 'number' ? ref : referenceArgmax(ref);
        if (step.picks[t].kind === 'argmax') {
          assert.equal(got, wantId, `step ${s}, slot ${slot}: greedy id`);
        } else {
          // logits, and the CPU's answer to a sample pick: the logits row
          assert.ok(got instanceof Float32Array, `step ${s}, slot ${slot}: a ${step.picks[t].kind} pick returns the logits row here`);
          if (ref instanceof Float32Array) assert.deepEqual(got, ref);
          else assert.equal(referenceArgmax(got), ref, `step ${s}, slot ${slot}: the twin's per-row greedy id`);
        }
        next[slot] = wantId;
        pos[slot]++;
      }
    }
  } finally {
    model.dispose();
    twin.dispose();
  }
});
