import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import { StepLoop } from '../../src/server/engine/stepLoop.js';
import { FakeBatchedLm as FakeModel, POISON } from './batchSupport.js';

function prefill(loop: StepLoop, model: FakeModel, slot: number, tokens: readonly number[], startPos = 0, signal?: AbortSignal): Promise<number> {
  const feed = (t: readonly number[], p: number): Promise<number> => model.forwardArgmax(t, p, slot);
  return loop.prefill({ tokens, startPos, feed, last: feed, signal });
}

/** A run: prefill, then `n` decodes, yielding to the event loop between tokens as `generate` does. */
async function run(loop: StepLoop, model: FakeModel, slot: number, n: number, prompt: readonly number[] = [1, 2], signal?: AbortSignal): Promise<number[]> {
  loop.join();
  try {
    const ids = [await prefill(loop, model, slot, prompt, 0, signal)];
    for (let i = 0; i < n; i++) {
      await nextTurn();
      ids.push((await loop.decode({ slot, token: ids[ids.length - 1], pos: prompt.length + i, pick: { kind: 'argmax' } })) as number);
    }
    return ids;
  } finally {
    loop.leave();
  }
}

const iota = (n: number, from = 1): number[] => Array.from({ length: n }, (_, i) => from + i);

test('runs in flight decode together: one step per token, one row per run', async () => {
  const model = new FakeModel();
  const loop = new StepLoop(model);
  const out = await Promise.all([0, 1, 2].map((slot) => run(loop, model, slot, 5)));
  // each run's ids: 2+slot, then +slot per step
  out.forEach((ids, slot) => assert.deepEqual(ids, Array.from({ length: 6 }, (_, i) => 2 + slot * (i + 1))));
  assert.equal(model.steps.length, 5);
  for (const step of model.steps) assert.deepEqual(step.map((r) => r.slot).sort(), [0, 1, 2]);
  assert.deepEqual(loop.stats, { steps: 5, rows: 15, lastBatchSize: 3, maxBatchSize: 3, prefillChunks: 3 });
  assert.equal(model.overlapped, false, 'no prefill or step overlapped another');
});

test('a run joining mid-way prefills between steps and joins the batch; one leaving shrinks it', async () => {
  const model = new FakeModel();
  const loop = new StepLoop(model);
  const long = run(loop, model, 0, 8);
  while (model.steps.length < 2) await nextTurn();
  const late = run(loop, model, 1, 3);
  await Promise.all([long, late]);
  const sizes = model.steps.map((s) => s.length);
  assert.equal(sizes.reduce((a, b) => a + b, 0), 11);
  assert.ok(sizes.includes(2), `some steps carried both runs: ${sizes.join(',')}`);
  assert.equal(sizes[sizes.length - 1], 1, 'after the short run left, the long one decodes alone');
  assert.ok(model.events.indexOf('prefill 1@0x2') > model.events.indexOf('step 0'), `the late prefill ran after steps had started: ${model.events.join(' | ')}`);
  assert.equal(model.overlapped, false);
});

test('a long prompt is fed a chunk per turn, with a decode step of the running run between chunks', async () => {
  const model = new FakeModel();
  const loop = new StepLoop(model, { prefillRows: 4 });
  const decoding = run(loop, model, 0, 30);
  while (model.steps.length < 2) await nextTurn(); // slot 0 is decoding
  const prompt = iota(18, 10); // 18 ids: chunks of 4, 4, 4, 4, 2
  const long = run(loop, model, 1, 2, prompt);
  const [, ids] = await Promise.all([decoding, long]);

  assert.equal(ids[0], prompt[prompt.length - 1] + 1, 'the prefill answers with the last chunk\'s result');
  const chunks = model.events.filter((e) => e.startsWith('prefill 1@'));
  assert.deepEqual(chunks, ['prefill 1@0x4', 'prefill 1@4x4', 'prefill 1@8x4', 'prefill 1@12x4', 'prefill 1@16x2']);
  for (let c = 1; c < chunks.length; c++) {
    const between = model.events.slice(model.events.indexOf(chunks[c - 1]) + 1, model.events.indexOf(chunks[c]));
    assert.ok(between.some((e) => /^step (.*,)?0(,|$)/.test(e)), `slot 0 decoded between chunks ${c - 1} and ${c}: ${between.join(' | ')}`);
  }
  assert.equal(loop.stats.prefillChunks, 1 + 5);
  assert.equal(model.overlapped, false, 'no chunk overlapped a step');
});

test('chunks start at the fed position (a reused prefix) and follow the model\'s own chunk size by default', async () => {
  const model = Object.assign(new FakeModel(), { chunkRows: 3 });
  const loop = new StepLoop(model);
  assert.equal(loop.prefillRows, 3);
  assert.equal(await prefill(loop, model, 2, [5, 6, 7, 8, 9, 10, 11], 20), 13);
  assert.deepEqual(model.events, ['prefill 2@20x3', 'prefill 2@23x3', 'prefill 2@26x1']);
});

test('short prompts share a turn up to the row budget, oldest first', async () => {
  const model = new FakeModel();
  const loop = new StepLoop(model, { prefillRows: 4 });
  const decoding = run(loop, model, 0, 6);
  while (model.steps.length < 1) await nextTurn();
  const prompts = [prefill(loop, model, 1, [1, 2]), prefill(loop, model, 2, [3, 4]), prefill(loop, model, 3, [5])];
  assert.deepEqual(await Promise.all(prompts), [3, 6, 8]);
  await decoding;
  // the first two fit one turn's 4 rows; the third waits for the next turn, after a step
  const e = model.events;
  const [p1, p2, p3] = ['prefill 1@0x2', 'prefill 2@0x2', 'prefill 3@0x1'].map((x) => e.indexOf(x));
  assert.ok(p1 >= 0 && p2 === p1 + 1, `the two that fit ran back to back: ${e.join(' | ')}`);
  assert.ok(p3 > p2 + 1 && e.slice(p2 + 1, p3).includes('step 0'), `a step ran before the third: ${e.join(' | ')}`);
});

test('a prompt that fails (even synchronously) fails its run only; the others go on', async () => {
  const model = new FakeModel();
  const loop = new StepLoop(model, { prefillRows: 4 });
  const decoding = run(loop, model, 0, 10);
  while (model.steps.length < 1) await nextTurn();
  const bad = run(loop, model, 1, 3, [...iota(6), POISON, 1]); // the second chunk throws
  const good = run(loop, model, 2, 3, iota(9));
  await assert.rejects(bad, /poisoned prompt/);
  assert.deepEqual(await good, [11, 13, 15, 17]);
  assert.equal((await decoding).length, 11);
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

test('an abort between chunks stops the prefill: no further chunk runs', async () => {
  const model = new FakeModel();
  const loop = new StepLoop(model, { prefillRows: 4 });
  const controller = new AbortController();
  const started = prefill(loop, model, 1, iota(40), 0, controller.signal);
  while (model.events.length < 2) await nextTurn();
  controller.abort(new Error('client gone'));
  await assert.rejects(started, /client gone/);
  const chunks = model.events.length;
  assert.ok(chunks >= 2 && chunks <= 3, `the prefill stopped after ${chunks} of 10 chunks`);
  await sleep(20);
  assert.equal(model.events.length, chunks, 'nothing ran after the abort');
});

test('an abort while queued behind another prompt settles at once, before any chunk of it runs', async () => {
  const model = new FakeModel();
  const loop = new StepLoop(model, { prefillRows: 4 });
  const first = prefill(loop, model, 0, iota(40));
  const controller = new AbortController();
  const queued = prefill(loop, model, 1, iota(8), 0, controller.signal);
  while (model.events.length < 1) await nextTurn();
  let settledAt = -1;
  const settled = queued.catch((err: unknown) => {
    settledAt = model.events.length;
    throw err;
  });
  controller.abort(new Error('client gone'));
  await assert.rejects(settled, /client gone/);
  assert.ok(settledAt <= 2, `settled after ${settledAt} chunks of the first prompt, not after all 10`);
  assert.equal(await first, 40);
  assert.ok(!model.events.some((e) => e.startsWith('prefill 1')), 'no chunk of the aborted prompt ran');
});

test('close refuses queued and later work, and calls back only once the running model call is done', async () => {
  const model = new FakeModel();
  const loop = new StepLoop(model, { prefillRows: 4 });
  loop.join();
  loop.join();
  const long = prefill(loop, model, 0, iota(40));
  const decode = loop.decode({ slot: 1, token: 3, pos: 7 });
  while (!model.inside) await nextTurn();
  const reason = new Error('unloaded');
  let idleWhileInside: boolean | undefined;
  const idle = new Promise<void>((resolve) => loop.close(reason, () => {
    idleWhileInside = model.inside;
    resolve();
  }));
  const late = loop.decode({ slot: 1, token: 3, pos: 8 });
  await assert.rejects(late, /unloaded/);
  await assert.rejects(long, /unloaded/);
  await idle;
  assert.equal(idleWhileInside, false, 'the model was idle when the loop said so');
  const calls = model.events.length;
  await decode.catch(() => {}); // taken by the step that was running, or refused: either way settled
  await sleep(20);
  assert.equal(model.events.length, calls, 'no model call after close');
  let calledAtOnce = false;
  new StepLoop(model).close(reason, () => { calledAtOnce = true; });
  assert.ok(calledAtOnce, 'an idle loop calls back at once');
});

test('a member that sends nothing does not hold the others back for good', async () => {
  const model = new FakeModel();
  const loop = new StepLoop(model);
  loop.join(); // never sends
  assert.equal(await loop.decode({ slot: 0, token: 7, pos: 0 }), 7);
  loop.leave();
});
