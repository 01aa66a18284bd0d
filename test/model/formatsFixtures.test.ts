import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { dequantizeGptq, loadGptqLinear } from '../../src/formats/gptq.js';
import { discoverModel } from '../../src/formats/modelFolder.js';
import { toFloat32 } from '../../src/formats/safetensors.js';
import { WeightStore } from '../../src/formats/weightStore.js';
import { FIXTURE_NAMES, VARIANTS, fixtureDir } from '../support/reference.js';
import { FIXTURES } from '../support/paths.js';

/**
 * The real fixtures as GPTQ-for-LLaMa wrote them: format, bits, group size and act-order are
 * detected from the tensors (the no-act-order folder has no quantize_config.json), every
 * linear loads, and each dequantized GPTQ weight is close to the fp16 weight it was made from
 * (a wrong bit order or zero offset would be off by whole quantization steps everywhere).
 */
const LINEARS = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'] as const;

for (const fixture of FIXTURE_NAMES) {
  const modelConfig = (JSON.parse(readFileSync(path.join(FIXTURES, fixture, 'reference.json'), 'utf8')) as { model_config: Record<string, number> }).model_config;

  for (const variant of VARIANTS) {
    test(`${fixture}/${variant}: discovered format, settings and dims`, () => {
      const m = discoverModel(fixtureDir(fixture, variant));
      assert.equal(m.config.hiddenSize, modelConfig.hidden_size);
      assert.equal(m.config.intermediateSize, modelConfig.intermediate_size);
      assert.equal(m.config.numLayers, modelConfig.num_hidden_layers);
      assert.equal(m.config.numHeads, modelConfig.num_attention_heads);
      assert.equal(m.config.numKvHeads, modelConfig.num_attention_heads);
      assert.equal(m.config.vocabSize, modelConfig.vocab_size);
      assert.equal(m.config.bosTokenId, 1);
      assert.equal(m.config.eosTokenId, 2);
      assert.equal(m.config.tieWordEmbeddings, false);
      assert.ok(m.tokenizerFiles.includes('tokenizer.model'));
      assert.match(m.weightsChoiceReason, /the only \.safetensors file/);
      if (variant === 'fp16') {
        assert.equal(m.format, 'fp16');
        assert.equal(m.gptq, undefined);
        assert.equal(path.basename(m.weightsPath), 'model.safetensors');
      } else {
        assert.equal(m.format, 'gptq');
        assert.deepEqual({ bits: m.gptq?.bits, groupSize: m.gptq?.groupSize, actOrder: m.gptq?.actOrder }, { bits: 4, groupSize: 128, actOrder: variant.endsWith('actorder') });
        assert.equal(m.gptq?.sym, false);
        assert.match(path.basename(m.weightsPath), variant.endsWith('actorder') ? /latest\.act-order\.safetensors$/ : /compat\.no-act-order\.safetensors$/);
        assert.equal(m.quantizeConfig !== undefined, variant.endsWith('actorder'));
      }
    });
  }

  for (const variant of VARIANTS.filter((v) => v !== 'fp16')) {
    test(`${fixture}/${variant}: every GPTQ linear loads and dequantizes close to the fp16 weights`, () => {
      const m = discoverModel(fixtureDir(fixture, variant));
      const { hiddenSize: dim, intermediateSize: ffn, numLayers } = m.config;
      const gptq = WeightStore.open(m.weightsPath);
      const fp16 = WeightStore.open(fixtureDir(fixture, 'fp16'), 'model.safetensors');
      try {
        for (let l = 0; l < numLayers; l++) {
          for (const name of LINEARS) {
            const prefix = `model.layers.${l}.${name}`;
            const [inF, outF] = name === 'mlp.down_proj' ? [ffn, dim] : name.startsWith('mlp.') ? [dim, ffn] : [dim, dim];
            const layer = loadGptqLinear(gptq, prefix, inF, outF, m.quantizeConfig);
            assert.equal(layer.bits, 4);
            assert.equal(layer.groupSize, 128);
            assert.equal(layer.groups, inF / 128);
            assert.equal(layer.actOrder, variant.endsWith('actorder'), prefix);
            const w = dequantizeGptq(layer); // [out, in]
            const ref = toFloat32('F16', fp16.read(`${prefix}.weight`)); // [out, in]
            let err = 0;
            let mag = 0;
            for (let k = 0; k < w.length; k++) {
              err += (w[k] - ref[k]) ** 2;
              mag += ref[k] ** 2;
            }
            // 4-bit GPTQ keeps ‖W − Ŵ‖ / ‖W‖ around 0.1; a packing error gives ≳ 1
            const rel = Math.sqrt(err / mag);
            assert.ok(rel < 0.2, `${prefix}: relative error ${rel.toFixed(3)}`);
          }
        }
      } finally {
        gptq.close();
        fp16.close();
      }
    });
  }
}
