import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { floatToHalf } from '../../src/formats/safetensors.js';
import { WeightStore } from '../../src/formats/weightStore.js';
import { runConvert } from '../../src/cli/commands/convert.js';
import { UsageError } from '../../src/errors.js';
import { f16Bytes, f32Bytes, torchCheckpoint, type TensorSpec } from './torchFixtures.js';

test('qllama convert turns sharded .bin into safetensors with the same tensors', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'qllama-convert-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const half = { key: '0', type: 'HalfStorage' as const, bytes: f16Bytes([1, 2, 3, 4, 5, 6], floatToHalf), numel: 6 };
  const fl = { key: '1', type: 'FloatStorage' as const, bytes: f32Bytes([1, 2, 3, 4, 5, 6]), numel: 6 };
  const a: TensorSpec[] = [{ name: 'a', storage: half, offset: 0, shape: [2, 3], stride: [3, 1] }];
  const b: TensorSpec[] = [{ name: 'bT', storage: fl, offset: 0, shape: [3, 2], stride: [1, 3] }];
  const src = path.join(dir, 'src');
  mkdirSync(src);
  writeFileSync(path.join(src, 'pytorch_model-00001-of-00002.bin'), torchCheckpoint(a));
  writeFileSync(path.join(src, 'pytorch_model-00002-of-00002.bin'), torchCheckpoint(b));
  writeFileSync(path.join(src, 'pytorch_model.bin.index.json'), JSON.stringify({ weight_map: { a: 'pytorch_model-00001-of-00002.bin', bT: 'pytorch_model-00002-of-00002.bin' } }));
  writeFileSync(path.join(src, 'config.json'), '{"vocab_size":3}');
  const out = path.join(dir, 'out');
  const write = process.stdout.write;
  process.stdout.write = (() => true) as typeof process.stdout.write;
  try {
    assert.equal(await runConvert([src, '--to', 'safetensors', '--out', out]), 0);
  } finally {
    process.stdout.write = write;
  }
  const store = WeightStore.open(path.join(out, 'model.safetensors'));
  assert.deepEqual(store.read('a'), half.bytes);
  assert.deepEqual(store.entry('bT').shape, [3, 2]);
  assert.deepEqual(store.read('bT'), f32Bytes([1, 4, 2, 5, 3, 6]));
  store.close();
  assert.equal(readFileSync(path.join(out, 'config.json'), 'utf8'), '{"vocab_size":3}');
  await assert.rejects(runConvert([src, '--to', 'gguf']), UsageError);
});
