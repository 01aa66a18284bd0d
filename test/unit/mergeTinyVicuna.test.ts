import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { floatToHalf, halfToFloat, SafetensorsFile } from '../../src/formats/safetensors.js';
import { writeSafetensors } from '../../src/formats/safetensorsWriter.js';
import { makeDelta, mergeDelta } from '../../src/hub/mergeDelta.js';
import { LlamaModel } from '../../src/model/llama.js';
import { argmax } from '../../src/generate/sampler.js';
import { fixtureDir, loadReference } from '../support/reference.js';

/**
 * The round trip on a real model: tiny-vicuna fp16 grown by a [PAD] row is the
 * "fine-tune"; a perturbed copy of the 32000-row original is the "LLaMA base". make-delta then
 * merge-delta must give the target back bit-exact, and the merged model must generate what the
 * original generates.
 */
const original = fixtureDir('tiny-vicuna', 'fp16');
const root = mkdtempSync(path.join(os.tmpdir(), 'qllama-tv-merge-'));
after(() => rmSync(root, { recursive: true, force: true }));
const SIDE = ['config.json', 'generation_config.json', 'tokenizer.model', 'tokenizer_config.json', 'special_tokens_map.json'];
const VOCAB_ROWS = /(embed_tokens|lm_head)\.weight$/;

function halfBits(buf: Buffer): Uint16Array {
  return new Uint16Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}

async function derive(out: string, transform: (name: string, bits: Uint16Array, shape: readonly number[]) => { bits: Uint16Array; shape: number[] }, vocab: number): Promise<void> {
  mkdirSync(out, { recursive: true });
  const src = SafetensorsFile.open(path.join(original, 'model.safetensors'));
  const names = src.names();
  const made = new Map(names.map((n) => {
    const e = src.entry(n);
    if (e.dtype !== 'F16') throw new Error(`fixture tensor ${n} is ${e.dtype}`);
    return [n, transform(n, halfBits(src.read(n)), e.shape)];
  }));
  await writeSafetensors(path.join(out, 'model.safetensors'), names.map((n) => ({ name: n, dtype: 'F16', shape: made.get(n)!.shape })), (n) => new Uint8Array(made.get(n)!.bits.buffer));
  src.close();
  for (const f of SIDE) copyFileSync(path.join(original, f), path.join(out, f));
  const config = JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
  writeFileSync(path.join(out, 'config.json'), JSON.stringify({ ...config, vocab_size: vocab }));
}

test('tiny-vicuna: make-delta from a perturbed base, merge back: bit-exact, vocab 32001, same greedy tokens', async () => {
  const target = path.join(root, 'target');
  const base = path.join(root, 'base');
  await derive(target, (name, bits, shape) => {
    if (!VOCAB_ROWS.test(name)) return { bits, shape: [...shape] };
    const grown = new Uint16Array(bits.length + (shape[1] as number)); // the [PAD] row: zeros
    grown.set(bits);
    return { bits: grown, shape: [(shape[0] as number) + 1, shape[1] as number] };
  }, 32001);
  // Perturb by at most ±20 % of each value, so target − base is exact in fp16 (Sterbenz).
  await derive(base, (_name, bits, shape) => ({ bits: bits.map((h, i) => floatToHalf(halfToFloat(h) * (1 + 0.2 * Math.sin(i * 0.7)))), shape: [...shape] }), 32000);

  await makeDelta({ base, target, out: path.join(root, 'delta') });
  const merged = path.join(root, 'merged');
  const report = await mergeDelta({ base, delta: path.join(root, 'delta'), out: merged });
  assert.deepEqual([...report.padded].sort(), ['lm_head.weight', 'model.embed_tokens.weight']);

  const want = SafetensorsFile.open(path.join(target, 'model.safetensors'));
  const got = SafetensorsFile.open(path.join(merged, 'model.safetensors'));
  assert.deepEqual(got.names().sort(), want.names().sort());
  for (const n of want.names()) {
    assert.deepEqual(got.entry(n).shape, want.entry(n).shape, n);
    assert.ok(got.read(n).equals(want.read(n)), `${n} differs from the target`);
  }
  assert.deepEqual(got.entry('lm_head.weight').shape.slice(0, 1), [32001]);
  want.close();
  got.close();
  assert.equal((JSON.parse(readFileSync(path.join(merged, 'config.json'), 'utf8')) as { vocab_size: number }).vocab_size, 32001);

  const ref = loadReference('tiny-vicuna');
  const prompt = Object.values(ref.reference_generations.fp16)[0]!;
  const greedy = async (dir: string): Promise<number[]> => {
    const model = await LlamaModel.create(dir);
    const ids: number[] = [];
    let next = argmax(await model.forward(prompt.input_ids, 0));
    for (let s = 0; s < 12; s++) {
      ids.push(next);
      next = argmax(await model.forward([next], prompt.input_ids.length + s));
    }
    model.dispose();
    return ids;
  };
  assert.deepEqual(await greedy(merged), await greedy(original));
});
