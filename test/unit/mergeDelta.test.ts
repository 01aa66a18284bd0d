import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { UsageError } from '../../src/errors.js';
import { floatToHalf, halfToFloat, type SafetensorsDType } from '../../src/formats/safetensors.js';
import { writeSafetensors } from '../../src/formats/safetensorsWriter.js';
import { WeightStore } from '../../src/formats/weightStore.js';
import { DeltaMismatchError, makeDelta, mergeDelta } from '../../src/hub/mergeDelta.js';
import { runMergeDelta } from '../../src/cli/commands/mergeDelta.js';
import { torchCheckpoint, type TensorSpec } from './torchFixtures.js';

const root = mkdtempSync(path.join(os.tmpdir(), 'qllama-merge-'));
after(() => rmSync(root, { recursive: true, force: true }));
const V = 8; // "32000"
const H = 4;

/** xorshift → fp16-representable values in [-2, 2) */
function halfValues(n: number, seed: number): number[] {
  let s = seed;
  return Array.from({ length: n }, () => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return halfToFloat(floatToHalf((s / 2 ** 32) * 4 - 2));
  });
}

interface Tensor { shape: number[]; values: number[]; dtype?: SafetensorsDType }
type Model = Record<string, Tensor>;

function encode(t: Tensor): Uint8Array {
  const dtype = t.dtype ?? 'F16';
  if (dtype === 'F32') return new Uint8Array(Float32Array.from(t.values).buffer);
  return new Uint8Array(Uint16Array.from(t.values, (v) => floatToHalf(v)).buffer);
}

async function writeModel(dir: string, model: Model, extra: Record<string, string> = {}): Promise<string> {
  mkdirSync(dir, { recursive: true });
  const names = Object.keys(model);
  await writeSafetensors(path.join(dir, 'model.safetensors'), names.map((n) => ({ name: n, dtype: model[n]!.dtype ?? 'F16', shape: model[n]!.shape })), (n) => encode(model[n]!));
  for (const [file, text] of Object.entries(extra)) writeFileSync(path.join(dir, file), text);
  return dir;
}

function readModel(dir: string): Map<string, { shape: readonly number[]; dtype: string; bits: Uint16Array }> {
  const store = WeightStore.open(existsSync(path.join(dir, 'model.safetensors.index.json')) ? dir : path.join(dir, 'model.safetensors'));
  const out = new Map<string, { shape: readonly number[]; dtype: string; bits: Uint16Array }>();
  for (const n of store.names()) {
    const e = store.entry(n);
    const b = store.read(n);
    out.set(n, { shape: e.shape, dtype: e.dtype, bits: new Uint16Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)) });
  }
  store.close();
  return out;
}

const base: Model = {
  'model.embed_tokens.weight': { shape: [V, H], values: halfValues(V * H, 1) },
  'model.layers.0.mlp.down_proj.weight': { shape: [H, 6], values: halfValues(H * 6, 2) },
  'model.norm.weight': { shape: [H], values: halfValues(H, 3), dtype: 'F32' },
  'lm_head.weight': { shape: [V, H], values: halfValues(V * H, 4) },
};
const delta: Model = {
  'model.embed_tokens.weight': { shape: [V + 1, H], values: halfValues((V + 1) * H, 5) },
  'model.layers.0.mlp.down_proj.weight': { shape: [H, 6], values: halfValues(H * 6, 6) },
  'model.norm.weight': { shape: [H], values: halfValues(H, 7) },
  'lm_head.weight': { shape: [V + 1, H], values: halfValues((V + 1) * H, 8) },
};
const baseConfig = JSON.stringify({ model_type: 'llama', vocab_size: V, torch_dtype: 'float16' });

/** The reference: fp16(fp32(base, zero [PAD] row) + fp32(delta)). */
function expectedMerge(name: string): Uint16Array {
  const b = base[name]!;
  const d = delta[name]!;
  return Uint16Array.from(d.values, (dv, i) => floatToHalf(Math.fround((b.values[i] ?? 0) + dv)));
}

test('merge-delta: base + [PAD] zero row + delta, fp32 sum saved fp16; config and tokenizer follow', async () => {
  const baseDir = await writeModel(path.join(root, 'base'), base, { 'config.json': baseConfig, 'tokenizer.model': 'base-spm' });
  const deltaDir = await writeModel(path.join(root, 'delta'), delta, { 'tokenizer.model': 'delta-spm', 'tokenizer_config.json': '{"pad_token":"[PAD]"}' });
  const out = path.join(root, 'merged');
  const report = await mergeDelta({ base: baseDir, delta: deltaDir, out });
  assert.deepEqual([...report.padded].sort(), ['lm_head.weight', 'model.embed_tokens.weight']);
  const merged = readModel(out);
  for (const name of Object.keys(base)) {
    const m = merged.get(name)!;
    assert.equal(m.dtype, 'F16', name);
    assert.deepEqual([...m.shape], delta[name]!.shape, name);
    assert.deepEqual(m.bits, expectedMerge(name), name);
  }
  // the [PAD] row is exactly the delta's row: the base contributed zeros
  const padRow = merged.get('lm_head.weight')!.bits.subarray(V * H);
  assert.deepEqual([...padRow], delta['lm_head.weight']!.values.slice(V * H).map((v) => floatToHalf(v)));
  const config = JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8')) as { vocab_size: number };
  assert.equal(config.vocab_size, V + 1);
  assert.equal(readFileSync(path.join(out, 'tokenizer.model'), 'utf8'), 'delta-spm');
  assert.ok(existsSync(path.join(out, 'tokenizer_config.json')));
});

test('merge-delta writes shards with an index when asked for small shards', async () => {
  const out = path.join(root, 'merged-sharded');
  const report = await mergeDelta({ base: path.join(root, 'base'), delta: path.join(root, 'delta'), out, shardBytes: 80 });
  assert.ok(report.files.length > 1, `${report.files.length} shards`);
  const index = JSON.parse(readFileSync(path.join(out, 'model.safetensors.index.json'), 'utf8')) as { weight_map: Record<string, string> };
  assert.deepEqual(Object.keys(index.weight_map).sort(), Object.keys(base).sort());
  const merged = readModel(out);
  for (const name of Object.keys(base)) assert.deepEqual(merged.get(name)!.bits, expectedMerge(name), name);
});

test('make-delta then merge-delta gives the target back bit-exact (fp16 delta, base within 2x)', async () => {
  // A "fine-tuned" target with the [PAD] row, and a base that is a perturbed copy of it.
  const target: Model = {};
  const pert: Model = {};
  for (const [name, t] of Object.entries(delta)) {
    target[name] = { shape: t.shape, values: t.values };
    const rows = name.endsWith('embed_tokens.weight') || name === 'lm_head.weight' ? V * H : t.values.length;
    // Sterbenz: when base/2 <= target <= 2*base, target - base is exact in fp16.
    pert[name] = { shape: name === 'model.norm.weight' || name.includes('mlp') ? t.shape : [V, H], values: t.values.slice(0, rows).map((v, i) => halfToFloat(floatToHalf(v * (1 + 0.2 * Math.sin(i))))) };
  }
  const targetDir = await writeModel(path.join(root, 'target'), target, { 'config.json': JSON.stringify({ vocab_size: V + 1 }), 'tokenizer.model': 'tuned' });
  const pertDir = await writeModel(path.join(root, 'pert'), pert, { 'config.json': baseConfig });
  await makeDelta({ base: pertDir, target: targetDir, out: path.join(root, 'made-delta') });
  await mergeDelta({ base: pertDir, delta: path.join(root, 'made-delta'), out: path.join(root, 'roundtrip') });
  const back = readModel(path.join(root, 'roundtrip'));
  for (const [name, t] of Object.entries(target)) assert.deepEqual(back.get(name)!.bits, Uint16Array.from(t.values, (v) => floatToHalf(v)), name);
  assert.equal(readFileSync(path.join(root, 'roundtrip', 'tokenizer.model'), 'utf8'), 'tuned');

  // With an fp32 delta the round trip is exact for any base, here an unrelated random one.
  await makeDelta({ base: path.join(root, 'base'), target: targetDir, out: path.join(root, 'made-delta32'), dtype: 'F32' });
  await mergeDelta({ base: path.join(root, 'base'), delta: path.join(root, 'made-delta32'), out: path.join(root, 'roundtrip32') });
  const back32 = readModel(path.join(root, 'roundtrip32'));
  for (const [name, t] of Object.entries(target)) assert.deepEqual(back32.get(name)!.bits, Uint16Array.from(t.values, (v) => floatToHalf(v)), name);
});

test('a .bin delta merges like its safetensors twin', async () => {
  const specs: TensorSpec[] = Object.entries(delta).map(([name, t], i) => {
    const bytes = Buffer.from(encode(t));
    return { name, storage: { key: String(i), type: 'HalfStorage', bytes, numel: t.values.length }, offset: 0, shape: t.shape, stride: t.shape.length === 2 ? [t.shape[1]!, 1] : [1] };
  });
  const binDir = path.join(root, 'delta-bin');
  mkdirSync(binDir, { recursive: true });
  writeFileSync(path.join(binDir, 'pytorch_model.bin'), torchCheckpoint(specs));
  await mergeDelta({ base: path.join(root, 'base'), delta: binDir, out: path.join(root, 'merged-bin') });
  const merged = readModel(path.join(root, 'merged-bin'));
  for (const name of Object.keys(base)) assert.deepEqual(merged.get(name)!.bits, expectedMerge(name), name);
});

test('mismatched names or shapes are refused before anything is written', async () => {
  const lacking = await writeModel(path.join(root, 'lacking'), { 'model.embed_tokens.weight': delta['model.embed_tokens.weight']! });
  await assert.rejects(mergeDelta({ base: path.join(root, 'base'), delta: lacking, out: path.join(root, 'x1') }), (e: unknown) => e instanceof DeltaMismatchError && /lacks/.test(e.message));
  assert.equal(existsSync(path.join(root, 'x1', 'model.safetensors')), false);
  await assert.rejects(mergeDelta({ base: path.join(root, 'base'), delta: path.join(root, 'delta'), out: path.join(root, 'x2'), padToken: false }), (e: unknown) => e instanceof DeltaMismatchError && /--no-pad-token/.test(e.message));
  // --no-pad-token with equal shapes is FastChat's plain sum
  await mergeDelta({ base: path.join(root, 'base'), delta: path.join(root, 'pert'), out: path.join(root, 'plain'), padToken: false });
  assert.deepEqual([...readModel(path.join(root, 'plain')).get('lm_head.weight')!.shape], [V, H]);
});

test('the merge-delta command parses its flags strictly', async () => {
  await assert.rejects(runMergeDelta(['--base', 'a', '--bogus']), UsageError);
  await assert.rejects(runMergeDelta(['--base', 'a']), UsageError);
});
