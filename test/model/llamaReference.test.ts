import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { LlamaModel } from '../../src/model/llama.js';
import { SafetensorsFile, asFloat32 } from '../../src/formats/safetensors.js';
import { argmax } from '../../src/generate/sampler.js';
import { FIXTURES } from '../support/paths.js';
import { FIXTURE_NAMES, VARIANTS, firstNearTie, fixtureDir, loadReference } from '../support/reference.js';

/**
 * The forward pass against the fixtures' independent references (PyTorch, fp16 on a GPU):
 * last-position logits within fp16 tolerance, and greedy ids equal up to the first near tie,
 * decoding incrementally through the KV cache (the reference recomputed everything each step).
 */
const LOGIT_TOLERANCE = 0.02; // observed ≤ 0.007 (fp16 GPU reference vs our f32); the README calls ≤ 0.05 rounding

for (const fixture of FIXTURE_NAMES) {
  const ref = loadReference(fixture);
  const logitsFile = SafetensorsFile.open(path.join(FIXTURES, fixture, 'reference-logits.safetensors'));
  for (const variant of VARIANTS) {
    test(`${fixture}/${variant}: last logits and greedy ids match the reference`, async () => {
      const model = await LlamaModel.create(fixtureDir(fixture, variant));
      const prompts = Object.values(ref.reference_generations[variant]);
      for (let i = 0; i < prompts.length; i++) {
        const { input_ids, greedy_ids, top2_gaps } = prompts[i];
        const logits = await model.forward(input_ids, 0);
        const expected = asFloat32(logitsFile.read(`${variant}/prompt${i}.last_logits`));
        assert.equal(logits.length, expected.length);
        let maxDiff = 0;
        for (let j = 0; j < logits.length; j++) maxDiff = Math.max(maxDiff, Math.abs(logits[j] - expected[j]));
        assert.ok(maxDiff <= LOGIT_TOLERANCE, `prompt ${i}: max |Δlogit| = ${maxDiff.toFixed(4)} > ${LOGIT_TOLERANCE}`);

        const steps = firstNearTie(top2_gaps);
        const ids: number[] = [];
        let next = argmax(logits);
        for (let s = 0; s < steps; s++) {
          ids.push(next);
          if (s + 1 < steps) next = argmax(await model.forward([next], input_ids.length + s));
        }
        assert.deepEqual(ids, greedy_ids.slice(0, steps), `prompt ${i}: greedy ids differ before the first near tie (step ${steps})`);
      }
      model.dispose();
    });
  }
}
