import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { floatToHalf } from '../../src/formats/safetensors.js';
import { PickleFormatError, unpickle, UnknownPickleOpcodeError, UnsafePickleError } from '../../src/formats/torchPickle.js';
import { torchHooks, TorchTensorError } from '../../src/formats/torchPickleTensors.js';
import { TruncatedZipError, ZipFormatError } from '../../src/formats/torchZip.js';
import { openTorchCheckpoint, TorchCheckpoint } from '../../src/formats/torchZipCheckpoint.js';
import { LegacyCheckpointError } from '../../src/formats/torchPickleLegacy.js';
import { bf16Bytes, f16Bytes, f32Bytes, legacyTorchCheckpoint, PickleWriter, stateDictPickle, torchCheckpoint, type StorageSpec, type TensorSpec } from './torchFixtures.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'qllama-torch-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
let counter = 0;
function writeTmp(bytes: Buffer, name = `ckpt${counter++}.bin`): string {
  const file = path.join(tmp, name);
  writeFileSync(file, bytes);
  return file;
}

const halfValues = [0.5, -1.25, 3, 65504, -0.0009765625, 2.5];
const half: StorageSpec = { key: '0', type: 'HalfStorage', bytes: f16Bytes(halfValues, floatToHalf), numel: 6 };
const bf: StorageSpec = { key: '1', type: 'BFloat16Storage', bytes: bf16Bytes([1, -2, 0.5, 1024]), numel: 4 };
// One fp32 storage holding q (rows 0-1) and k (rows 2-3) of a fused projection, like a split qkv.
const fused: StorageSpec = { key: '2', type: 'FloatStorage', bytes: f32Bytes([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]), numel: 12 };
const long: StorageSpec = { key: '3', type: 'LongStorage', bytes: Buffer.from(new BigInt64Array([0n, 1n, 2n]).buffer), numel: 3 };

const tensors: TensorSpec[] = [
  { name: 'model.embed_tokens.weight', storage: half, offset: 0, shape: [2, 3], stride: [3, 1] },
  { name: 'model.norm.weight', storage: bf, offset: 0, shape: [4], stride: [1], parameter: true },
  { name: 'q.weight', storage: fused, offset: 0, shape: [2, 3], stride: [3, 1] },
  { name: 'k.weight', storage: fused, offset: 6, shape: [2, 3], stride: [3, 1] },
  // k transposed, saved without .contiguous(): strides [1, 3]
  { name: 'kT.weight', storage: fused, offset: 6, shape: [3, 2], stride: [1, 3] },
  { name: 'position_ids', storage: long, offset: 0, shape: [1, 3], stride: [3, 1] },
];

function f32(buf: Buffer): number[] {
  return Array.from(new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength)));
}

function checkAll(file: string): void {
  const c = TorchCheckpoint.open(file);
  try {
    assert.deepEqual(c.names(), tensors.map((t) => t.name));
    assert.deepEqual(c.entry('model.embed_tokens.weight'), { dtype: 'F16', shape: [2, 3] });
    assert.deepEqual(c.read('model.embed_tokens.weight'), half.bytes);
    assert.deepEqual(c.entry('model.norm.weight'), { dtype: 'BF16', shape: [4] });
    assert.deepEqual(c.read('model.norm.weight'), bf.bytes);
    assert.deepEqual(f32(c.read('q.weight')), [0, 1, 2, 3, 4, 5]);
    assert.deepEqual(f32(c.read('k.weight')), [6, 7, 8, 9, 10, 11]);
    assert.deepEqual(f32(c.read('kT.weight')), [6, 9, 7, 10, 8, 11]);
    assert.deepEqual(c.entry('position_ids'), { dtype: 'I64', shape: [1, 3] });
    assert.deepEqual(c.read('position_ids'), long.bytes);
  } finally {
    c.close();
  }
}

test('a torch.save-style state dict reads back: fp16, bf16, fp32 views with offsets and strides, params, int64', () => {
  checkAll(writeTmp(torchCheckpoint(tensors)));
});

test('zip64 records and a deflated pickle read back the same', () => {
  checkAll(writeTmp(torchCheckpoint(tensors, { zip64: true })));
  checkAll(writeTmp(torchCheckpoint(tensors, { deflatePickle: true })));
});

test('the legacy (pre-1.6, non-zip) format reads back the same; cut short, it is a named error', () => {
  const legacy = legacyTorchCheckpoint(tensors);
  checkAll(writeTmp(legacy));
  assert.throws(() => TorchCheckpoint.open(writeTmp(legacy.subarray(0, legacy.length - 3))), LegacyCheckpointError);
  assert.throws(() => TorchCheckpoint.open(writeTmp(legacy.subarray(0, 40))), PickleFormatError);
});

test('sharded checkpoints via pytorch_model.bin.index.json', () => {
  const dir = mkdtempSync(path.join(tmp, 'sharded-'));
  writeFileSync(path.join(dir, 'pytorch_model-00001-of-00002.bin'), torchCheckpoint(tensors.slice(0, 2)));
  writeFileSync(path.join(dir, 'pytorch_model-00002-of-00002.bin'), torchCheckpoint(tensors.slice(2)));
  const weightMap = Object.fromEntries(tensors.map((t, i) => [t.name, `pytorch_model-0000${i < 2 ? 1 : 2}-of-00002.bin`]));
  writeFileSync(path.join(dir, 'pytorch_model.bin.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
  const c = openTorchCheckpoint(dir);
  assert.deepEqual(c.names().sort(), tensors.map((t) => t.name).sort());
  assert.deepEqual(f32(c.read('kT.weight')), [6, 9, 7, 10, 8, 11]);
  assert.deepEqual(c.read('model.embed_tokens.weight'), half.bytes);
  c.close();
});

/** A pickle that does what malicious checkpoints do: GLOBAL os.system, REDUCE with a command. */
function evilPickle(module: string, name: string, stackGlobal = false): Buffer {
  const w = new PickleWriter().op(0x80, stackGlobal ? 4 : 2);
  if (stackGlobal) w.op(0x8c, module.length).raw(Buffer.from(module)).op(0x8c, name.length).raw(Buffer.from(name)).op(0x93);
  else w.op(0x63).raw(Buffer.from(`${module}\n${name}\n`));
  return w.str('echo pwned').op(0x85, 0x52, 0x2e).bytes();
}

test('globals outside the allow-list are refused by name, before anything is called', () => {
  for (const [m, n] of [['os', 'system'], ['builtins', 'eval'], ['posix', 'system'], ['subprocess', 'Popen'], ['torch', 'load'], ['torch._utils', '_rebuild_device_tensor_from_numpy']]) {
    for (const stack of [false, true]) {
      assert.throws(() => unpickle(evilPickle(m as string, n as string, stack), torchHooks), (e: unknown) => e instanceof UnsafePickleError && e.message.includes(`${m}.${n}`));
    }
  }
  // inside a real checkpoint, too
  const file = writeTmp(torchCheckpoint(tensors, { pickle: evilPickle('os', 'system') }));
  assert.throws(() => TorchCheckpoint.open(file), UnsafePickleError);
});

test('unknown opcodes and broken pickles are named errors', () => {
  assert.throws(() => unpickle(Buffer.from([0x80, 2, 0x69, 0x2e]), torchHooks), UnknownPickleOpcodeError); // INST
  assert.throws(() => unpickle(Buffer.from([0x80, 2, 0xff]), torchHooks), UnknownPickleOpcodeError);
  assert.throws(() => unpickle(Buffer.from([0x80, 2, 0x58, 0xff, 0xff, 0xff, 0x7f]), torchHooks), PickleFormatError); // length past end
  assert.throws(() => unpickle(Buffer.from([0x80, 2, 0x2e]), torchHooks), PickleFormatError); // STOP on empty stack
  assert.throws(() => unpickle(Buffer.from([0x80, 2, 0x68, 9, 0x2e]), torchHooks), PickleFormatError); // memo never set
  const good = stateDictPickle(tensors);
  assert.throws(() => unpickle(good.subarray(0, good.length - 1), torchHooks), PickleFormatError); // no STOP
});

test('a truncated zip is a TruncatedZipError', () => {
  const whole = torchCheckpoint(tensors);
  for (const keep of [0, 10, Math.floor(whole.length / 2), whole.length - 30, whole.length - 1]) {
    assert.throws(() => TorchCheckpoint.open(writeTmp(whole.subarray(0, keep))), TruncatedZipError, `kept ${keep}`);
  }
});

test('bad offsets are named errors: tensor past its storage, storage past its entry, directory outside the file', () => {
  const past: TensorSpec[] = [{ name: 'w', storage: fused, offset: 8, shape: [2, 3], stride: [3, 1] }];
  assert.throws(() => TorchCheckpoint.open(writeTmp(torchCheckpoint(past))), (e: unknown) => e instanceof TorchTensorError && /reaches element/.test(e.message));
  const lying: StorageSpec = { ...fused, numel: 100 };
  assert.throws(() => TorchCheckpoint.open(writeTmp(torchCheckpoint([{ name: 'w', storage: lying, offset: 0, shape: [2], stride: [1] }]))), TorchTensorError);
  const zip = torchCheckpoint(tensors);
  const badDir = Buffer.from(zip);
  badDir.writeUInt32LE(0x7ffffff0, badDir.length - 6); // central directory offset
  assert.throws(() => TorchCheckpoint.open(writeTmp(badDir)), TruncatedZipError);
  const badLocal = Buffer.from(zip);
  badLocal.writeUInt32LE(0, 0); // first local header signature
  assert.throws(() => TorchCheckpoint.open(writeTmp(badLocal)), ZipFormatError);
});
