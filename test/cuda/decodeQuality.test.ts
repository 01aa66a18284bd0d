/**
 * Quality of the decode path on CUDA (one-row GEMVs on int8-quantized x, fp16 KV cache) against the
 * CPU backend in exact f32: perplexity of the embedded model over a text, token by token, so every
 * token goes through the captured one-row path that generation uses.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CpuBackend } from '../../src/backends/cpu/cpuBackend.js';
import type { Backend } from '../../src/backends/backend.js';
import { LlamaModel } from '../../src/model/llama.js';
import { Tokenizer } from '../../src/tokenizer/index.js';
import { EMBEDDED_MODEL } from '../support/paths.js';
import { gpu, skipNoGpu } from './support.js';

// Plain English prose of the kind the model was trained on (chat and encyclopedic text).
const TEXT = `The history of the city begins with a small settlement on the river, where farmers traded grain and wool
with merchants who came by boat. Over the following centuries the town grew into a market centre, and a stone bridge
was built to replace the old ferry. In the nineteenth century the railway arrived, bringing factories, new streets and
thousands of workers from the countryside. Today the city is known for its university, its museums and the parks that
line both banks of the river. Visitors often ask what the best season is to travel there. Most people say that late
spring is pleasant, because the weather is mild and the gardens are in bloom, while summer can be hot and crowded.`;

async function decodePerplexity(backend: Backend, ids: readonly number[]): Promise<number> {
  const model = await LlamaModel.create(EMBEDDED_MODEL, { backend, contextLength: 512 });
  let nll = 0;
  for (let i = 0; i + 1 < ids.length; i++) {
    const logits = await model.forward([ids[i]], i);
    let max = -Infinity;
    for (const v of logits) max = Math.max(max, v);
    let sum = 0;
    for (const v of logits) sum += Math.exp(v - max);
    nll -= logits[ids[i + 1]] - max - Math.log(sum);
  }
  return Math.exp(nll / (ids.length - 1));
}

test('decode perplexity on CUDA (int8-x GEMV) within 1% of the exact CPU backend', { skip: skipNoGpu }, async (t) => {
  const tok = await Tokenizer.fromModelDir(EMBEDDED_MODEL);
  const ids = tok.encode(TEXT, { addBos: true });
  assert.ok(ids.length > 150, `only ${ids.length} tokens`);
  const cuda = await decodePerplexity(gpu(), ids);
  const cpu = await decodePerplexity(new CpuBackend({ int8Gemv: false }), ids);
  const ratio = cuda / cpu;
  t.diagnostic(`decode perplexity over ${ids.length} tokens: CUDA ${cuda.toFixed(4)}, CPU exact ${cpu.toFixed(4)}, ratio ${ratio.toFixed(5)}`);
  assert.ok(Math.abs(ratio - 1) < 0.01, `perplexity CUDA ${cuda.toFixed(3)} vs CPU ${cpu.toFixed(3)} (ratio ${ratio.toFixed(4)})`);
});
