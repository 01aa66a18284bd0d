/**
 * The fp16 activation store (`--activations f16`, chosen automatically above 2 GiB, i.e. for every
 * real 7B+ run) against f32 on the same calibration set: GPTQ sees inputs rounded to fp16 between
 * passes, so a few rounding flips are expected, and the model's quality must not move.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { assertSameTensorLayout } from '../support/tensorLayout.js';
import { quantizeModel } from '../../src/quantize/pipeline.js';
import { FP16, TEST_CALIBRATION, pplOf, settings4, tempOut } from './quantizeSupport.js';

const FILE = 'tiny-vicuna-4k-GPTQ-4bit-128g.compat.no-act-order.safetensors';
const calibration = { ...TEST_CALIBRATION, nsamples: 8, seqlen: 128 };

test('quantize with fp16 activations: same layout, perplexity within 0.5% of the f32 store', async () => {
  const outs = { f32: tempOut('act-f32'), f16: tempOut('act-f16') };
  try {
    for (const dtype of ['f32', 'f16'] as const) {
      await quantizeModel({
        modelDir: FP16, outDir: outs[dtype], name: 'tiny-vicuna-4k', settings: settings4(false), trueSequential: true, rtn: false,
        calibration, activations: dtype,
      });
    }
    // same tensors, dtypes and shapes (element-wise agreement is no criterion: GPTQ's error feedback
    // carries any rounding flip into every later column — measured 83% equal values at equal quality)
    assertSameTensorLayout(path.join(outs.f16, FILE), path.join(outs.f32, FILE));
    const [pa, pb] = [await pplOf(outs.f32, 'wikitext2', 20), await pplOf(outs.f16, 'wikitext2', 20)];
    console.log(`fp16 vs f32 activations: wikitext2 ppl ${pb.toFixed(4)} vs ${pa.toFixed(4)} (${(100 * (pb / pa - 1)).toFixed(3)}%)`);
    assert.ok(Math.abs(pb / pa - 1) < 0.005, `ppl with fp16 activations ${pb} vs f32 ${pa}: more than 0.5% apart`);
  } finally {
    for (const o of Object.values(outs)) rmSync(path.dirname(o), { recursive: true, force: true });
  }
});
