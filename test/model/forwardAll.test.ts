/**
 * forwardAll computes lm_head in pieces of runState's MAX_LOGITS_ROWS when a chunk has more rows (so a
 * 2048-row chunk does not hold 2048 rows of logits): the pieces must give what whole chunks give.
 * The whole-chunk path itself is held to GPTQ-for-LLaMa's perplexities in perplexity.test.ts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LlamaModel } from '../../src/model/llama.js';
import { MAX_LOGITS_ROWS } from '../../src/model/runState.js';
import { EMBEDDED_MODEL } from '../support/paths.js';

test('forwardAll: chunks of more rows than MAX_LOGITS_ROWS give the logits of smaller chunks, and forward the last row', async () => {
  const n = MAX_LOGITS_ROWS + 150;
  const tokens = Array.from({ length: n }, (_, i) => (i * 7919 + 1) % 4000);
  const big = await LlamaModel.create(EMBEDDED_MODEL, { contextLength: 512, chunkRows: 512 });
  const small = await LlamaModel.create(EMBEDDED_MODEL, { contextLength: 512, chunkRows: 128 });
  try {
    assert.equal(big.chunkRows, 512);
    const a = await big.forwardAll(tokens, 0), b = await small.forwardAll(tokens, 0);
    assert.equal(a.length, n * big.vocabSize);
    let maxDiff = 0;
    for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
    assert.ok(Number.isFinite(maxDiff) && maxDiff < 1e-3, `max |diff| ${maxDiff}`);
    const last = await big.forward(tokens, 0);
    const tail = a.subarray((n - 1) * big.vocabSize);
    for (let j = 0; j < last.length; j++) assert.ok(Math.abs(last[j] - tail[j]) < 1e-3, `forward vs forwardAll, logit ${j}`);
  } finally {
    big.dispose();
    small.dispose();
  }
});
