import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { quantizeModel } from '../../src/quantize/pipeline.js';
import type { QuantizeSettings } from '../../src/quantize/types.js';
import { FP16, TEST_CALIBRATION, pplOf, quantizeWithErrors, rtnWeights, tempOut } from './quantizeSupport.js';

/**
 * At 3 bits and at 2 bits g64 GPTQ must clearly beat round-to-nearest. Measured on the held-out
 * C4 documents (900–999; the model's own domain, where it is sensitive), 10 windows of 256:
 * GPTQ's perplexity increase over fp16 must be under 2/3 of RTN's, and every layer's
 * ‖WX − QX‖² under half of RTN's on the same calibration inputs.
 */
const WINDOWS = 10;

for (const [label, s] of [
  ['3-bit g128', { bits: 3, groupSize: 128, actOrder: false, staticGroups: false, sym: false, damp: 0.01 }],
  ['2-bit g64', { bits: 2, groupSize: 64, actOrder: false, staticGroups: false, sym: false, damp: 0.01 }],
] as const satisfies readonly (readonly [string, QuantizeSettings])[]) {
  test(`${label}: GPTQ clearly beats --rtn`, async () => {
    const gptqOut = tempOut('lowbit');
    const rtnOut = tempOut('rtn');
    try {
      const { errors } = await quantizeWithErrors(
        { modelDir: FP16, outDir: gptqOut, name: 'tiny-vicuna-4k', settings: s, trueSequential: true, rtn: false, calibration: TEST_CALIBRATION },
        rtnWeights(s),
      );
      await quantizeModel({ modelDir: FP16, outDir: rtnOut, name: 'tiny-vicuna-4k', settings: s, trueSequential: true, rtn: true });
      for (let l = 0; l < errors.ours.length; l++) {
        const ratio = errors.other[l] / errors.ours[l];
        console.log(`${label} layer ${l}: ‖WX−QX‖² GPTQ ${errors.ours[l].toFixed(1)}  RTN ${errors.other[l].toFixed(1)}  (RTN/GPTQ ${ratio.toFixed(2)})`);
        assert.ok(ratio > 2, `layer ${l}: RTN/GPTQ error ratio ${ratio}`);
      }
      const fp16 = await pplOf(FP16, 'c4-heldout', WINDOWS);
      const gptq = await pplOf(gptqOut, 'c4-heldout', WINDOWS);
      const rtn = await pplOf(rtnOut, 'c4-heldout', WINDOWS);
      console.log(`${label} C4 held-out ppl (${WINDOWS} windows): fp16 ${fp16.toFixed(3)}  GPTQ ${gptq.toFixed(3)} (+${((gptq / fp16 - 1) * 100).toFixed(2)}%)  RTN ${rtn.toFixed(3)} (+${((rtn / fp16 - 1) * 100).toFixed(2)}%)`);
      assert.ok(gptq < rtn, `GPTQ ${gptq} vs RTN ${rtn}`);
      assert.ok(gptq - fp16 < (2 / 3) * (rtn - fp16), `GPTQ adds ${gptq - fp16}, RTN ${rtn - fp16}`);
    } finally {
      rmSync(path.dirname(gptqOut), { recursive: true, force: true });
      rmSync(path.dirname(rtnOut), { recursive: true, force: true });
    }
  });
}
