import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { QllamaError } from '../../src/errors.js';
import { floatToHalf } from '../../src/formats/safetensors.js';
import { unpickle } from '../../src/formats/torchPickle.js';
import { torchHooks } from '../../src/formats/torchPickleTensors.js';
import { TorchCheckpoint } from '../../src/formats/torchZipCheckpoint.js';
import { f16Bytes, f32Bytes, stateDictPickle, torchCheckpoint, type TensorSpec } from './torchFixtures.js';

/** xorshift32: a fixed seed makes any failure reproducible. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s;
  };
}

const storage = { key: '0', type: 'HalfStorage' as const, bytes: f16Bytes([1, 2, 3, 4, 5, 6], floatToHalf), numel: 6 };
const f32s = { key: '1', type: 'FloatStorage' as const, bytes: f32Bytes([1, 2, 3, 4]), numel: 4 };
const tensors: TensorSpec[] = [
  { name: 'a', storage, offset: 0, shape: [2, 3], stride: [3, 1] },
  { name: 'b', storage: f32s, offset: 1, shape: [3], stride: [1], parameter: true },
  { name: 'c', storage, offset: 0, shape: [3, 2], stride: [1, 3] },
];

function mutate(input: Buffer, next: () => number): Buffer {
  const out = Buffer.from(input);
  const edits = 1 + (next() % 4);
  for (let e = 0; e < edits; e++) {
    const i = next() % out.length;
    switch (next() % 4) {
      case 0: out[i] = next() & 0xff; break;
      case 1: out[i] ^= 1 << (next() % 8); break;
      case 2: out[i] = [0x00, 0xff, 0x7f, 0x80, 0x28, 0x2e, 0x52, 0x62, 0x51][next() % 9] as number; break;
      default: return Buffer.concat([out.subarray(0, i), out.subarray(i + 1 + (next() % 8))]);
    }
  }
  return out;
}

/** Only two outcomes are allowed: a value, or a QllamaError (named, with advice). */
function expectNamed(run: () => void, what: string): void {
  try {
    run();
  } catch (err) {
    assert.ok(err instanceof QllamaError, `${what}: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`);
  }
}

test('fuzz: random and mutated pickles end in a value or a named error, quickly', () => {
  const next = rng(20240611);
  const good = stateDictPickle(tensors);
  const deadline = Date.now() + 2000;
  let runs = 0;
  while (Date.now() < deadline) {
    const input = runs % 3 === 0
      ? Buffer.from(Array.from({ length: 1 + (next() % 256) }, () => next() & 0xff))
      : mutate(good, next);
    const t0 = Date.now();
    expectNamed(() => unpickle(input, torchHooks), `input ${input.toString('hex')}`);
    assert.ok(Date.now() - t0 < 500, 'one input took more than 0.5 s');
    runs++;
  }
  assert.ok(runs > 1000, `only ${runs} runs`);
});

test('fuzz: mutated checkpoint files end in tensors or named errors', (t) => {
  const next = rng(7);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'qllama-fuzz-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const good = torchCheckpoint(tensors);
  const deadline = Date.now() + 2000;
  let runs = 0;
  while (Date.now() < deadline) {
    const file = path.join(dir, `f${runs % 8}.bin`);
    const bytes = mutate(good, next);
    writeFileSync(file, bytes);
    expectNamed(() => {
      const c = TorchCheckpoint.open(file);
      try {
        for (const n of c.names()) c.read(n);
      } finally {
        c.close();
      }
    }, `file ${bytes.toString('hex')}`);
    runs++;
  }
  assert.ok(runs > 100, `only ${runs} runs`);
});
