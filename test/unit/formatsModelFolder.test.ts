import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ConfigFieldError, ConfigSyntaxError, MissingConfigError, parseLlamaConfig, readLlamaConfig, UnsupportedModelTypeError } from '../../src/formats/hfConfig.js';
import { discoverModel, ModelFolderNotFoundError, UnrecognizedWeightsError, WeightsNotFoundError } from '../../src/formats/modelFolder.js';
import { QuantizeConfigMismatchError } from '../../src/formats/gptq.js';
import { writeSafetensors } from '../../src/formats/safetensorsWriter.js';
import { MissingShardError } from '../../src/formats/weightStore.js';
import { FIXTURES } from '../support/paths.js';
import { tempDir } from './formatsSupport.js';

const root = tempDir('folder');
const CONFIG = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2,
  num_attention_heads: 4, vocab_size: 100, rms_norm_eps: 1e-5, bos_token_id: 1, eos_token_id: 2,
};

function named(cls: new (...a: never[]) => Error, re: RegExp): (e: unknown) => boolean {
  return (e) => e instanceof cls && (e as Error).name === cls.name && re.test((e as Error).message);
}

test('config.json: defaults, GQA, list-valued eos, and named errors naming file and field', () => {
  const c = parseLlamaConfig(CONFIG, 'x/config.json');
  assert.deepEqual(
    { kv: c.numKvHeads, theta: c.ropeTheta, ctx: c.maxPositionEmbeddings, tie: c.tieWordEmbeddings, pad: c.padTokenId, type: c.modelType, arch: c.architectures },
    { kv: 4, theta: 10000, ctx: 2048, tie: false, pad: undefined, type: 'llama', arch: ['LlamaForCausalLM'] },
  );
  const g = parseLlamaConfig({ ...CONFIG, num_key_value_heads: 2, rope_theta: 500000, max_position_embeddings: 4096, eos_token_id: [2, 7], pad_token_id: 0, tie_word_embeddings: true });
  assert.deepEqual([g.numKvHeads, g.ropeTheta, g.maxPositionEmbeddings, g.eosTokenId, g.padTokenId, g.tieWordEmbeddings], [2, 500000, 4096, 2, 0, true]);

  for (const field of ['hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'vocab_size']) {
    const broken: Record<string, unknown> = { ...CONFIG };
    delete broken[field];
    assert.throws(() => parseLlamaConfig(broken, 'm/config.json'), named(ConfigFieldError, new RegExp(`m/config\\.json: "${field}" is missing`)));
  }
  assert.throws(() => parseLlamaConfig({ ...CONFIG, hidden_size: '64' }), named(ConfigFieldError, /"hidden_size" is not a positive integer/));
  assert.throws(() => parseLlamaConfig({ ...CONFIG, num_key_value_heads: 3 }), named(ConfigFieldError, /num_key_value_heads 3/));
  assert.throws(() => parseLlamaConfig({ ...CONFIG, rms_norm_eps: 'x' }), named(ConfigFieldError, /rms_norm_eps/));
  assert.throws(() => parseLlamaConfig({ ...CONFIG, model_type: 'gpt2' }), named(UnsupportedModelTypeError, /model_type "gpt2"/));
  assert.throws(() => parseLlamaConfig([1]), ConfigSyntaxError);

  const dir = path.join(root, 'cfg');
  mkdirSync(dir);
  assert.throws(() => readLlamaConfig(dir), named(MissingConfigError, /no config\.json/));
  writeFileSync(path.join(dir, 'config.json'), '{"hidden_size": 64,');
  assert.throws(() => readLlamaConfig(dir), named(ConfigSyntaxError, /cfg\/config\.json is not valid JSON/));
});

/** A minimal fp16 LLaMA folder (only what discovery looks at). */
async function fp16Folder(name: string, weightFiles: string[]): Promise<string> {
  const dir = path.join(root, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(CONFIG));
  for (const f of weightFiles) {
    await writeSafetensors(path.join(dir, f), [{ name: 'model.layers.0.self_attn.q_proj.weight', dtype: 'F16', shape: [64, 64] }], () => new Uint8Array(64 * 64 * 2));
  }
  return dir;
}

test('weights choice is deterministic and explained', async () => {
  const one = await fp16Folder('one', ['weights.safetensors']);
  const m1 = discoverModel(one);
  assert.equal(m1.format, 'fp16');
  assert.match(m1.weightsChoiceReason, /the only \.safetensors file \(weights\.safetensors\)/);
  assert.deepEqual(m1.tokenizerFiles, []);

  const seed = await fp16Folder('seed', ['stable-vicuna-13B-GPTQ-4bit.latest.act-order.safetensors', 'stable-vicuna-13B-GPTQ-4bit.compat.no-act-order.safetensors']);
  const m2 = discoverModel(seed);
  assert.equal(path.basename(m2.weightsPath), 'stable-vicuna-13B-GPTQ-4bit.compat.no-act-order.safetensors');
  assert.match(m2.weightsChoiceReason, /first of 2 .*name order.*latest\.act-order.*--weights/);
  const m3 = discoverModel(seed, { weights: 'stable-vicuna-13B-GPTQ-4bit.latest.act-order.safetensors' });
  assert.match(path.basename(m3.weightsPath), /latest/);
  assert.match(m3.weightsChoiceReason, /--weights/);
  assert.throws(() => discoverModel(seed, { weights: 'nope.safetensors' }), named(WeightsNotFoundError, /--weights nope\.safetensors.*compat/));

  const std = await fp16Folder('std', ['a.safetensors', 'model.safetensors']);
  assert.equal(path.basename(discoverModel(std).weightsPath), 'model.safetensors');
});

test('sharded folders use the index; missing pieces are named errors', async () => {
  const dir = await fp16Folder('sharded', []);
  const { writeShardedSafetensors } = await import('../../src/formats/safetensorsWriter.js');
  const specs = [0, 1].map((l) => ({ name: `model.layers.${l}.self_attn.q_proj.weight`, dtype: 'F16' as const, shape: [64, 64] }));
  await writeShardedSafetensors(dir, specs, () => new Uint8Array(64 * 64 * 2), { shardBytes: 8192 });
  const m = discoverModel(dir);
  assert.equal(path.basename(m.weightsPath), 'model.safetensors.index.json');
  assert.match(m.weightsChoiceReason, /sharded/);
  const { rmSync } = await import('node:fs');
  rmSync(path.join(dir, 'model-00002-of-00002.safetensors'));
  assert.throws(() => discoverModel(dir), named(MissingShardError, /model-00002-of-00002/));
  rmSync(path.join(dir, 'model.safetensors.index.json'));
  assert.throws(() => discoverModel(dir), named(WeightsNotFoundError, /shards.*no model\.safetensors\.index\.json/)); // a lone shard is not a model
});

test('missing folder, config, weights or LLaMA tensors give named errors', async () => {
  assert.throws(() => discoverModel(path.join(root, 'absent')), named(ModelFolderNotFoundError, /does not exist/));
  const noCfg = path.join(root, 'nocfg');
  mkdirSync(noCfg);
  assert.throws(() => discoverModel(noCfg), MissingConfigError);
  const noWeights = await fp16Folder('noweights', []);
  writeFileSync(path.join(noWeights, 'pytorch_model.bin'), '');
  assert.throws(() => discoverModel(noWeights), named(WeightsNotFoundError, /no \*\.safetensors.*pytorch_model\.bin.*qllama convert/));
  const other = path.join(root, 'other');
  mkdirSync(other);
  writeFileSync(path.join(other, 'config.json'), JSON.stringify(CONFIG));
  await writeSafetensors(path.join(other, 'model.safetensors'), [{ name: 'transformer.h.0.attn.c_attn.weight', dtype: 'F16', shape: [2] }], () => new Uint8Array(4));
  assert.throws(() => discoverModel(other), UnrecognizedWeightsError);
});

test('a quantize_config.json that contradicts the GPTQ tensors is caught at discovery', () => {
  const src = path.join(FIXTURES, 'tiny-vicuna', 'gptq-4bit-128g');
  const dir = path.join(root, 'wrong-qc');
  mkdirSync(dir);
  for (const f of readdirSync(src)) copyFileSync(path.join(src, f), path.join(dir, f));
  writeFileSync(path.join(dir, 'quantize_config.json'), JSON.stringify({ bits: 4, group_size: 128, desc_act: true, sym: false }));
  assert.throws(() => discoverModel(dir), named(QuantizeConfigMismatchError, /desc_act true/));
  writeFileSync(path.join(dir, 'quantize_config.json'), JSON.stringify({ bits: 3, group_size: 128 }));
  assert.throws(() => discoverModel(dir), named(QuantizeConfigMismatchError, /3 bits/));
});
