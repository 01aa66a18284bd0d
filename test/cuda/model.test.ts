/**
 * The embedded tiny-vicuna model on CUDA against the CPU backend: prompt logits, and greedy
 * decode through the captured decode graph must pick the same tokens.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CpuBackend } from '../../src/backends/cpu/cpuBackend.js';
import { LlamaModel } from '../../src/model/llama.js';
import { EMBEDDED_MODEL } from '../support/paths.js';
import { gpu, normErr, skipNoGpu } from './support.js';

function argmax(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

test('tiny-vicuna (act-order GPTQ): CUDA logits and greedy ids match the CPU backend', { skip: skipNoGpu }, async () => {
  const prompt = [1, 319, 13563, 1546, 263, 12758, 5199, 322, 385, 23116].map((t) => t % 4096);
  const cuda = await LlamaModel.create(EMBEDDED_MODEL, { backend: gpu(), contextLength: 256 });
  const cpu = await LlamaModel.create(EMBEDDED_MODEL, { backend: new CpuBackend({ int8Gemv: false }), contextLength: 256 });
  let lg = await cuda.forward(prompt, 0);
  let lc = await cpu.forward(prompt, 0);
  assert.ok(normErr(lg, lc) < 5e-3, `prompt logits err ${normErr(lg, lc)}`);
  let pos = prompt.length;
  for (let i = 0; i < 24; i++) {
    const ig = argmax(lg), ic = argmax(lc);
    assert.equal(ig, ic, `greedy step ${i}`);
    lg = await cuda.forward([ig], pos);
    lc = await cpu.forward([ic], pos);
    // decode steps run the one-row GEMV on int8-quantized x (gemv_q4.cu), the CPU oracle in exact f32
    assert.ok(normErr(lg, lc) < 2e-2, `step ${i} logits err ${normErr(lg, lc)}`);
    pos++;
  }
});
