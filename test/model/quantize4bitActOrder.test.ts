import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { WeightStore } from '../../src/formats/weightStore.js';
import { assertSameTensorLayout } from '../support/tensorLayout.js';
import { fixtureDir, loadReference } from '../support/reference.js';
import { FP16, TEST_CALIBRATION, pplOf, quantizeWithErrors, referenceWeights, settings4, tempOut } from './quantizeSupport.js';

const FILE = 'tiny-vicuna-4k-GPTQ-4bit-128g.latest.act-order.safetensors';

test('quantize tiny-vicuna-4k 4-bit g128 act-order true-sequential: same layout, perplexity and errors as GPTQ-for-LLaMa\'s file', async () => {
  const refDir = fixtureDir('tiny-vicuna-4k', 'gptq-4bit-128g-actorder');
  const refStore = WeightStore.open(path.join(refDir, FILE));
  const out = tempOut('act');
  try {
    const { errors, seconds } = await quantizeWithErrors(
      { modelDir: FP16, outDir: out, name: 'tiny-vicuna-4k', settings: settings4(true), trueSequential: true, rtn: false, calibration: TEST_CALIBRATION },
      referenceWeights(refStore),
    );
    // same file name, tensor names, dtypes and shapes as the reference export
    assert.ok(readdirSync(out).includes(FILE), `output holds ${readdirSync(out).join(', ')}`);
    assertSameTensorLayout(path.join(out, FILE), path.join(refDir, FILE));

    // ‖WX − QX‖² per layer on our calibration set: ours within 2% of (in practice below) the reference weights'
    for (let l = 0; l < errors.ours.length; l++) {
      const ratio = errors.ours[l] / errors.other[l];
      console.log(`layer ${l}: ‖WX−QX‖² ours ${errors.ours[l].toFixed(1)}  reference ${errors.other[l].toFixed(1)}  ratio ${ratio.toFixed(4)}`);
      assert.ok(ratio < 1.02, `layer ${l}: ours/reference = ${ratio}`);
    }

    const expected = loadReference('tiny-vicuna-4k').perplexity.results['gptq-4bit-128g-actorder']['wikitext2/seqlen256/first40'].ppl;
    const got = await pplOf(out, 'wikitext2', 40);
    const rel = (got - expected) / expected;
    console.log(`quantized in ${seconds.toFixed(1)} s; wikitext2 ppl ours ${got.toFixed(4)} vs GPTQ-for-LLaMa ${expected.toFixed(4)} (${(rel * 100).toFixed(3)}%)`);
    assert.ok(rel < 0.005, `ppl ${got} is more than 0.5% above the reference ${expected}`);
  } finally {
    refStore.close();
    rmSync(path.dirname(out), { recursive: true, force: true });
  }
});
