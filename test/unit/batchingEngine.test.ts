import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import { selectTemplate } from '../../src/chat/templateSelect.js';
import type { GenerationRequest, GenerationResult } from '../../src/generate/generator.js';
import type { TextCodec } from '../../src/generate/textCodec.js';
import { BatchingEngine } from '../../src/server/engine/batchingEngine.js';
import { FakeBatchedLm, POISON } from './batchSupport.js';

/** Ids as text; no EOS, so a run lasts its max tokens. */
const codec: TextCodec = {
  bosId: 1,
  eosId: -1,
  encode: () => [],
  decode: (ids) => ids.join(' '),
  createStreamDecoder: () => ({ push: (id) => `${id} `, flush: () => '' }),
};

/** The engine on the fake model, prompts fed 4 rows per turn; `disposed` records when the model went. */
function engineOn(model: FakeBatchedLm): { engine: BatchingEngine; disposed: { count: number; whileInside: boolean } } {
  const disposed = { count: 0, whileInside: false };
  const loaded = {
    model,
    tokenizer: codec,
    template: selectTemplate('fake', undefined, { override: 'none' }),
    dispose: () => {
      disposed.count++;
      disposed.whileInside ||= model.inside;
    },
  };
  return { engine: new BatchingEngine('fake', loaded, { prefillRows: 4 }), disposed };
}

const iota = (n: number, from = 1): number[] => Array.from({ length: n }, (_, i) => from + i);

function request(promptIds: readonly number[], maxNewTokens: number, signal?: AbortSignal): GenerationRequest {
  return { promptIds, maxNewTokens, sampling: { temperature: 0 }, stopAtEos: false, signal };
}

/** Runs to the end; the ids streamed and what the run returned. */
async function drain(engine: BatchingEngine, r: GenerationRequest): Promise<{ ids: number[]; result: GenerationResult | undefined }> {
  const it = engine.run(r);
  const ids: number[] = [];
  for (;;) {
    const step = await it.next();
    if (step.done === true) return { ids, result: step.value };
    ids.push(step.value.tokenId);
  }
}

const prefills = (model: FakeBatchedLm, slot: number): string[] => model.events.filter((e) => e.startsWith(`prefill ${slot}@`));

test('a client that leaves during a long prefill frees its slot at once; the cache keeps the chunks fed', async () => {
  const model = new FakeBatchedLm();
  const { engine } = engineOn(model);
  const prompt = iota(40); // 10 chunks
  const controller = new AbortController();
  const gone = drain(engine, request(prompt, 5, controller.signal));
  while (model.events.length < 2) await nextTurn();
  controller.abort(new Error('client gone'));
  const { ids, result } = await gone;
  assert.equal(result?.finishReason, 'aborted');
  assert.deepEqual(ids, [], 'no token came out of the cut prompt');
  assert.equal(engine.activeSequences, 0, 'the slot is free');
  const fed = model.events.length;
  assert.ok(fed >= 2 && fed <= 3, `${fed} of 10 chunks ran`);

  // the same prompt again: the slot's cache holds the chunks fed, so only the rest is fed now
  const again = await drain(engine, request(prompt, 2));
  assert.equal(again.result?.promptTokensEvaluated, 40 - 4 * fed);
  const slot = Number(/^prefill (\d)@/.exec(model.events[0])?.[1]);
  assert.equal(prefills(model, slot)[fed], `prefill ${slot}@${4 * fed}x4`, 'the prefill resumed where the cut one stopped');
  assert.deepEqual(again.ids, [40 + slot, 40 + 2 * slot]);
});

test('a prompt that fails fails its own run; a run decoding beside it is unaffected', async () => {
  const model = new FakeBatchedLm();
  const { engine } = engineOn(model);
  const decoding = drain(engine, request([1, 2], 30));
  while (model.steps.length < 2) await nextTurn();
  await assert.rejects(drain(engine, request([...iota(6), POISON], 5)), /poisoned prompt/);
  const { ids, result } = await decoding;
  assert.equal(result?.finishReason, 'length');
  assert.equal(ids.length, 30);
  assert.equal(engine.activeSequences, 0);
  // the failed slot's cache records none of the failed chunk: a later prompt feeds it again
  const later = await drain(engine, request(iota(8), 1));
  assert.equal(later.result?.finishReason, 'length');
});

test('dispose with runs in flight ends them quietly, and frees the model once no call runs on it', async () => {
  const model = new FakeBatchedLm();
  const { engine, disposed } = engineOn(model);
  const decoding = drain(engine, request([1, 2], 500));
  while (model.steps.length < 2) await nextTurn();
  const prefilling = drain(engine, request(iota(200).map((id) => 1 + (id % 90)), 5)); // 200 ids inside the fake's vocabulary (100)
  while (prefills(model, 1).length < 2) await nextTurn();
  while (!model.inside) await nextTurn();
  engine.dispose();
  const [a, b] = await Promise.all([decoding, prefilling]);
  assert.equal(a.result, undefined, 'the decoding run ended without an error');
  assert.equal(b.result, undefined, 'the prefilling run ended without an error');
  assert.ok(a.ids.length < 500 && b.ids.length === 0);
  await sleep(10); // the call that was running when dispose came ends first
  assert.deepEqual(disposed, { count: 1, whileInside: false });
  const calls = model.events.length;
  assert.equal((await drain(engine, request([1, 2], 3))).result, undefined, 'a run after dispose ends at once');
  engine.dispose();
  await sleep(10);
  assert.equal(model.events.length, calls, 'nothing ran on the model after it was disposed');
  assert.equal(disposed.count, 1, 'dispose is idempotent');
  assert.equal(engine.activeSequences, 0);
});
