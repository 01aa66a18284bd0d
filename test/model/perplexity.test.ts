import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { LlamaModel } from '../../src/model/llama.js';
import { Tokenizer } from '../../src/tokenizer/index.js';
import { perplexity } from '../../src/eval/perplexity.js';
import { readDatasetText } from '../../src/eval/datasetText.js';
import { DATA } from '../support/paths.js';
import { VARIANTS, fixtureDir, loadReference } from '../support/reference.js';

/** Perplexity as GPTQ-for-LLaMa computes it, within 0.5% of the fixture's reference figures. */
const DATASETS = {
  'wikitext2/seqlen256/first40': () => readDatasetText(path.join(DATA, 'wikitext-2', 'wikitext2_test_gptq_join_lf.txt')),
  'c4_docs900to999/seqlen256/first40': () => readDatasetText(path.join(DATA, 'c4', 'c4_sample.jsonl'), { start: 900, end: 1000 }),
} as const;

const fixture = 'tiny-vicuna-4k';
const ref = loadReference(fixture);

for (const variant of VARIANTS) {
  test(`${fixture}/${variant}: perplexity within 0.5% of the reference`, async () => {
    const dir = fixtureDir(fixture, variant);
    const model = await LlamaModel.create(dir, { contextLength: 256 });
    const tokenizer = await Tokenizer.fromModelDir(dir);
    for (const [key, text] of Object.entries(DATASETS)) {
      const expected = ref.perplexity.results[variant][key];
      const ids = tokenizer.encode(text(), { addBos: true, parseSpecial: false });
      const got = await perplexity(model, ids, 256, { maxWindows: 40 });
      assert.equal(got.windows, expected.windows);
      const rel = Math.abs(got.ppl - expected.ppl) / expected.ppl;
      assert.ok(rel < 0.005, `${key}: ppl ${got.ppl.toFixed(4)} vs reference ${expected.ppl.toFixed(4)} (${(rel * 100).toFixed(3)}%)`);
    }
    model.dispose();
  });
}
