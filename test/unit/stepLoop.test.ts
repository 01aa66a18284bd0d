import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import type { DeviceSampling } from '../../src/backends/backend.js';
import type { BatchedLm, DecodeRow, RowResult } from '../../src/model/batch.js';
import { StepLoop } from '../../src/server/engine/stepLoop.js';

/** A model whose next id is token + slot; records each step's rows and whether calls overlapped. */
class FakeModel implements BatchedLm {
  readonly vocabSize = 100;
  readonly contextLength = 1000;
  readonly sequences = 4;
  readonly steps: DecodeRow[][] = [];
  readonly events: string[] = [];
  private inside = false;
  overlapped = false;

  private async enter<T>(what: string, f: () => T): Promise<T> {
    if (this.inside) this.overlapped = true;
    this.inside = true;
    this.events.push(what);
    try {
      await sleep(2); // the loop must not start anything else meanwhile
      return f();
    } finally {
      this.inside = false;
    }
  }

  forward(): Promise<Float32Array> { return this.enter('prefill', () => new Float32Array(this.vocabSize)); }
  forwardArgmax(tokens: readonly number[], _pos: number, slot = 0): Promise<number> {
    return this.enter('prefill', () => tokens[tokens.length - 1] + slot);
  }
  forwardSample(_t: readonly number[], _p: number, _s: DeviceSampling): Promise<number> { return this.enter('prefill', () => 0); }
  decodeBatch(rows: readonly DecodeRow[]): Promise<RowResult[]> {
    return this.enter('step', () => {
      if (rows.some((r) => r.pos >= this.contextLength)) throw new RangeError('past the context');
      this.steps.push([...rows]);
      return rows.map((r) => r.token + r.slot);
    });
  }
}

/** A run: prefill alone, then `n` decodes, yielding to the event loop between tokens as `generate` does. */
async function run(loop: StepLoop, model: FakeModel, slot: number, n: number): Promise<number[]> {
  loop.join();
  try {
    const ids = [await loop.exclusive(() => model.forwardArgmax([1, 2], 0, slot))];
    for (let i = 0; i < n; i++) {
      await nextTurn();
      ids.push((await loop.decode({ slot, token: ids[ids.length - 1], pos: 2 + i, pick: { kind: 'argmax' } })) as number);
    }
    return ids;
  } finally {
    loop.leave();
  }
}

test('runs in flight decode together: one step per token, one row per run', async () => {
  const model = new FakeModel();
  const loop = new StepLoop(model);
  const out = await Promise.all([0, 1, 2].map((slot) => run(loop, model, slot, 5)));
  // each run's ids: 2+slot, then +slot per step
  out.forEach((ids, slot) => assert.deepEqual(ids, Array.from({ length: 6 }, (_, i) => 2 + slot * (i + 1))));
  assert.equal(model.steps.length, 5);
  for (const step of model.steps) assert.deepEqual(step.map((r) => r.slot).sort(), [0, 1, 2]);
  assert.deepEqual(loop.stats, { steps: 5, rows: 15, lastBatchSize: 3, maxBatchSize: 3 });
  assert.equal(model.overlapped, false, 'no prefill or step overlapped another');
});

test('a run joining mid-way prefills between steps and joins the batch; one leaving shrinks it', async () => {
  const model = new FakeModel();
  const loop = new StepLoop(model);
  const long = run(loop, model, 0, 8);
  await sleep(8);
  const late = run(loop, model, 1, 3);
  await Promise.all([long, late]);
  const sizes = model.steps.map((s) => s.length);
  assert.equal(sizes.reduce((a, b) => a + b, 0), 11);
  assert.ok(sizes.includes(2), `some steps carried both runs: ${sizes.join(',')}`);
  assert.equal(sizes[sizes.length - 1], 1, 'after the short run left, the long one decodes alone');
  assert.ok(model.events.lastIndexOf('prefill') > 0, 'the late prefill ran after steps had started');
  assert.equal(model.overlapped, false);
});

test('a row that fails (past the context) fails alone; the rest of its step is answered', async () => {
  const model = new FakeModel();
  const loop = new StepLoop(model);
  const good = loop.decode({ slot: 0, token: 5, pos: 3 });
  const bad = loop.decode({ slot: 1, token: 5, pos: 5000 });
  assert.equal(await good, 5);
  await assert.rejects(bad, /past the context/);
});

test('a member that sends nothing does not hold the others back for good', async () => {
  const model = new FakeModel();
  const loop = new StepLoop(model);
  loop.join(); // never sends
  assert.equal(await loop.decode({ slot: 0, token: 7, pos: 0 }), 7);
  loop.leave();
});
