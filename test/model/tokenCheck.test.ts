/**
 * Every pass checks its token ids against the vocabulary in the model (a replayed CUDA graph reads them on the
 * device, past the backend's embedding check): forward, feed and decodeBatch refuse an id outside it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LlamaModel } from '../../src/model/llama.js';
import { EMBEDDED_MODEL } from '../support/paths.js';

test('forward, feed and decodeBatch refuse a token id outside the vocabulary', async () => {
  const model = await LlamaModel.create(EMBEDDED_MODEL, { contextLength: 64, sequences: 2 });
  try {
    const V = model.vocabSize;
    for (const bad of [V, -1, 1.5]) {
      await assert.rejects(model.forward([1, bad], 0), /outside the vocabulary/, `forward ${bad}`);
      await assert.rejects(model.feed([bad], 0), /outside the vocabulary/, `feed ${bad}`);
      await assert.rejects(model.decodeBatch([{ slot: 0, token: 1, pos: 0 }, { slot: 1, token: bad, pos: 0 }]), /outside the vocabulary/, `decodeBatch ${bad}`);
    }
    assert.equal((await model.forward([1, V - 1], 0)).length, V);
  } finally {
    model.dispose();
  }
});
