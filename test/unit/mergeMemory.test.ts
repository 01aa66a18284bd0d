import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeSafetensors } from '../../src/formats/safetensorsWriter.js';
import { mergeDelta } from '../../src/hub/mergeDelta.js';

/**
 * Merging streams tensor by tensor: peak memory grows by a few tensors, not by the model.
 * A synthetic 2 × 300 MB model of 144 tensors (2 MB each in fp16) is merged; the process's
 * max RSS may grow by far less than one model (measured: about 80 MB for 34, 101 and 302 MB
 * models alike: V8's garbage-collection slack, not the model). Runs in its own test process.
 */
const TENSORS = 144;
const ELEMS = 1 << 20; // 2 MB fp16, 4 MB as fp32 while summing

async function synthetic(dir: string, fill: number): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const one = new Uint16Array(ELEMS).fill(fill);
  await writeSafetensors(path.join(dir, 'model.safetensors'),
    Array.from({ length: TENSORS }, (_, i) => ({ name: `model.layers.${i}.weight`, dtype: 'F16' as const, shape: [1024, 1024] })),
    () => new Uint8Array(one.buffer));
}

test('merge peak memory stays at a few tensors, not the model size', async (t) => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'qllama-merge-mem-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  await synthetic(path.join(root, 'base'), 0x3c00); // 1.0
  await synthetic(path.join(root, 'delta'), 0x3800); // 0.5
  const modelBytes = TENSORS * ELEMS * 2;
  const before = process.resourceUsage().maxRSS * 1024;
  await mergeDelta({
    base: path.join(root, 'base'), delta: path.join(root, 'delta'), out: path.join(root, 'out'), shardBytes: 100e6,
  });
  const grew = process.resourceUsage().maxRSS * 1024 - before;
  process.stdout.write(`# merge of 2 x ${(modelBytes / 1e6).toFixed(0)} MB: max RSS grew ${(grew / 1e6).toFixed(1)} MB\n`);
  assert.ok(grew < modelBytes / 2, `max RSS grew ${(grew / 1e6).toFixed(1)} MB while merging a ${(modelBytes / 1e6).toFixed(0)} MB model`);
});
