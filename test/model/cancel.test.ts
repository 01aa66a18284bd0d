import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LoadedModel } from '../../src/engine/loadedModel.js';
import { generate, generateAll } from '../../src/generate/generator.js';
import { EMBEDDED_MODEL } from '../support/paths.js';

/**
 * Cancelling a generation part-way (the multi-threaded CPU backend is mid-forward when the signal
 * fires) ends it as 'aborted' without hanging, and the same model then generates normally, with
 * the same greedy text as a model that was never interrupted.
 */
test('a cancelled generation stops cleanly and the model keeps working', async () => {
  const loaded = await LoadedModel.load({ dir: EMBEDDED_MODEL, backend: 'cpu', threads: 2, template: 'stable-vicuna' });
  try {
    const promptIds = loaded.tokenizer.encode('The history of the city began in', { addBos: true });
    const controller = new AbortController();
    const stream = generate(loaded.model, loaded.tokenizer, { promptIds, maxNewTokens: 200, stopAtEos: false, sampling: { temperature: 0 }, signal: controller.signal }, loaded.kv);
    let seen = 0;
    let result;
    for (;;) {
      const step = await stream.next();
      if (step.done === true) {
        result = step.value;
        break;
      }
      if (++seen === 3) setImmediate(() => controller.abort());
    }
    assert.equal(result.finishReason, 'aborted');
    assert.ok(result.tokenIds.length >= 3 && result.tokenIds.length < 200);

    const again = await generateAll(loaded.model, loaded.tokenizer, { promptIds, maxNewTokens: 12, sampling: { temperature: 0 } }, loaded.kv);
    const fresh = await LoadedModel.load({ dir: EMBEDDED_MODEL, backend: 'cpu', threads: 1, template: 'stable-vicuna' });
    try {
      const expected = await generateAll(fresh.model, fresh.tokenizer, { promptIds, maxNewTokens: 12, sampling: { temperature: 0 } });
      assert.deepEqual(again.tokenIds, expected.tokenIds);
    } finally {
      fresh.dispose();
    }
  } finally {
    loaded.dispose();
  }
});
