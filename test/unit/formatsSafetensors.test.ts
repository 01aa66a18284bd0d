import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { REPO_ROOT } from '../support/paths.js';
import { ModelLoadError } from '../../src/errors.js';
import {
  asFloat32, asInt32, asUint16, floatToHalf, halfToFloat, MissingTensorError, SafetensorsFile, SafetensorsHeaderError,
  SafetensorsOpenError, TensorOverlapError, TensorSizeMismatchError, toFloat32, TruncatedSafetensorsError, UnknownDTypeError,
  type SafetensorsDType,
} from '../../src/formats/safetensors.js';
import { SafetensorsWriteSpecError, writeSafetensors, writeShardedSafetensors } from '../../src/formats/safetensorsWriter.js';
import { MissingShardError, ShardIndexError, WeightStore } from '../../src/formats/weightStore.js';
import { rawSafetensors, rng, tempDir } from './formatsSupport.js';

const dir = tempDir('safetensors');

/** Asserts `fn` throws exactly `cls` (name equal to the class name) with a message matching `re`. */
function throwsNamed(fn: () => unknown, cls: new (...a: never[]) => Error, re?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${String(err)}`);
    assert.equal(err.name, cls.name);
    if (re) assert.match(err.message, re);
    return true;
  });
}

// --- every dtype, with values chosen to exercise its range ------------------------------------
const samples: Record<SafetensorsDType, { bytes: (v: number[]) => Uint8Array; values: number[] }> = {
  F16: { bytes: (v) => u8(Uint16Array.from(v, floatToHalf)), values: [0, -0.5, 1.5, 65504, -(2 ** -24)] },
  BF16: { bytes: (v) => u8(Uint16Array.from(v, (x) => new Uint32Array(Float32Array.of(x).buffer)[0] >>> 16)), values: [1, -2, 0.5, 3.140625, 2 ** 100] },
  F32: { bytes: (v) => u8(Float32Array.from(v)), values: [1.5, -3.25, 1e30, 0, 7] },
  F64: { bytes: (v) => u8(Float64Array.from(v)), values: [0.25, -1, 1e10, 2, 3] },
  I8: { bytes: (v) => u8(Int8Array.from(v)), values: [-128, 127, 0, -1, 5] },
  U8: { bytes: (v) => u8(Uint8Array.from(v)), values: [0, 255, 1, 2, 3] },
  I16: { bytes: (v) => u8(Int16Array.from(v)), values: [-32768, 32767, 0, 1, -2] },
  I32: { bytes: (v) => u8(Int32Array.from(v)), values: [-(2 ** 31), 2 ** 31 - 1, 0, 16777216, -5] },
  I64: { bytes: (v) => u8(BigInt64Array.from(v, BigInt)), values: [-(2 ** 40), 2 ** 40, 0, 1, -1] },
  BOOL: { bytes: (v) => u8(Uint8Array.from(v)), values: [0, 1, 1, 0, 1] },
};
function u8(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

test('writer → reader round trip of every dtype, with metadata, odd sizes and alignment', async () => {
  const file = path.join(dir, 'all.safetensors');
  const dtypes = Object.keys(samples) as SafetensorsDType[];
  // an I8 tensor of 3 bytes first puts every later tensor at an odd offset: views must copy
  const specs = [{ name: 'odd', dtype: 'I8' as const, shape: [3] }, ...dtypes.map((d) => ({ name: `t.${d}`, dtype: d, shape: [5, 1] }))];
  const produce = (name: string): Uint8Array => {
    if (name === 'odd') return u8(Int8Array.of(1, 2, 3));
    const s = samples[name.slice(2) as SafetensorsDType];
    return s.bytes(s.values);
  };
  await writeSafetensors(file, specs, produce, { format: 'pt', note: 'ünïcode' });
  const raw = readFileSync(file);
  assert.equal(Number(raw.readBigUInt64LE(0)) % 8, 0, 'header padded to 8 bytes');
  assert.deepEqual(readdirSync(dir).filter((f) => f.endsWith('.tmp')), [], 'no temp file left');

  const st = SafetensorsFile.open(file);
  try {
    assert.deepEqual(st.metadata, { format: 'pt', note: 'ünïcode' });
    assert.deepEqual(st.names(), specs.map((s) => s.name));
    for (const d of dtypes) {
      const e = st.entry(`t.${d}`);
      assert.equal(e.dtype, d);
      assert.deepEqual(e.shape, [5, 1]);
      assert.equal(e.file, file);
      const got = [...toFloat32(d, st.read(`t.${d}`))];
      const want = samples[d].values.map((v) => Math.fround(d === 'F16' ? halfToFloat(floatToHalf(v)) : v));
      assert.deepEqual(got, want, d);
    }
    assert.deepEqual([...asInt32(st.read('t.I32'))], samples.I32.values);
    assert.deepEqual([...asFloat32(st.read('t.F32'))], samples.F32.values.map(Math.fround));
    assert.deepEqual([...asUint16(st.read('t.F16'))], samples.F16.values.map(floatToHalf));
  } finally {
    st.close();
  }
});

test('typed views copy when a slice is misaligned and share memory when aligned', () => {
  const backing = Buffer.from(Int32Array.of(0, 1, 2, 3).buffer);
  const odd = Buffer.concat([Buffer.of(9), backing]).subarray(1);
  assert.deepEqual([...asInt32(odd)], [0, 1, 2, 3]);
  const view = asInt32(backing);
  view[0] = 42;
  assert.equal(backing.readInt32LE(0), 42);
});

test('floatToHalf rounds to nearest even and halfToFloat inverts it exactly', () => {
  for (let h = 0; h < 0x10000; h++) {
    const f = halfToFloat(h);
    if (Number.isNaN(f)) assert.equal(floatToHalf(f) & 0x7c00, 0x7c00);
    else assert.equal(floatToHalf(f), h, `half 0x${h.toString(16)}`);
  }
  assert.equal(floatToHalf(1 + 2 ** -11), floatToHalf(1)); // tie → even (down)
  assert.equal(floatToHalf(1 + 3 * 2 ** -11), floatToHalf(1 + 2 ** -9)); // tie → even (up)
  assert.equal(floatToHalf(65520), 0x7c00); // rounds past the max half → inf
  assert.equal(floatToHalf(2 ** -25), 0); // tie at the smallest subnormal → even (zero)
  assert.equal(floatToHalf(3 * 2 ** -26), 1);
});

test('reads only the tensor asked for: opening and reading do not load the whole file', () => {
  const file = path.join(dir, 'big.safetensors');
  const header = { small: { dtype: 'U8', shape: [4], data_offsets: [0, 4] }, big: { dtype: 'U8', shape: [8_000_000], data_offsets: [4, 8_000_004] } };
  rawSafetensors(file, header, 8_000_004);
  const before = process.memoryUsage().arrayBuffers;
  const st = SafetensorsFile.open(file);
  assert.equal(st.read('small').length, 4);
  assert.ok(process.memoryUsage().arrayBuffers - before < 4_000_000, 'the 8 MB tensor was not read');
  st.close();
});

test('bad files each give a named error', () => {
  const f = (name: string): string => path.join(dir, name);
  const ok = { a: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] } };

  writeFileSync(f('tiny'), Buffer.of(1, 2, 3));
  throwsNamed(() => SafetensorsFile.open(f('tiny')), TruncatedSafetensorsError, /8-byte header length/);

  rawSafetensors(f('hdrlong'), ok, 16, { claimedHeaderLength: 10_000n });
  throwsNamed(() => SafetensorsFile.open(f('hdrlong')), TruncatedSafetensorsError, /header claims 10000 bytes/);

  rawSafetensors(f('hdrhuge'), ok, 16, { claimedHeaderLength: 2n ** 63n });
  throwsNamed(() => SafetensorsFile.open(f('hdrhuge')), TruncatedSafetensorsError);

  rawSafetensors(f('json'), null, 16, { headerText: '{"a": {"dtype": "F32",' });
  throwsNamed(() => SafetensorsFile.open(f('json')), SafetensorsHeaderError, /not valid JSON/);

  rawSafetensors(f('array'), [1, 2], 0);
  throwsNamed(() => SafetensorsFile.open(f('array')), SafetensorsHeaderError, /not a JSON object/);

  rawSafetensors(f('dtype'), { a: { dtype: 'F8_E4M3', shape: [2], data_offsets: [0, 2] } }, 2);
  throwsNamed(() => SafetensorsFile.open(f('dtype')), UnknownDTypeError, /"a".*F8_E4M3/);

  rawSafetensors(f('span'), { a: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 16] } }, 16);
  throwsNamed(() => SafetensorsFile.open(f('span')), TensorSizeMismatchError, /spans 16 bytes.*needs 24/);

  rawSafetensors(f('reversed'), { a: { dtype: 'U8', shape: [0], data_offsets: [8, 4] } }, 16);
  throwsNamed(() => SafetensorsFile.open(f('reversed')), TensorSizeMismatchError);

  rawSafetensors(f('shape'), { a: { dtype: 'U8', shape: [-1], data_offsets: [0, 0] } }, 0);
  throwsNamed(() => SafetensorsFile.open(f('shape')), SafetensorsHeaderError, /shape/);

  rawSafetensors(f('offsets'), { a: { dtype: 'U8', shape: [1], data_offsets: [0] } }, 1);
  throwsNamed(() => SafetensorsFile.open(f('offsets')), SafetensorsHeaderError, /data_offsets/);

  rawSafetensors(f('range'), { a: { dtype: 'F32', shape: [4], data_offsets: [8, 24] } }, 16);
  throwsNamed(() => SafetensorsFile.open(f('range')), TruncatedSafetensorsError, /ends at data byte 24.*only 16/);

  rawSafetensors(f('overlap'), { a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] }, b: { dtype: 'F32', shape: [2], data_offsets: [8, 16] } }, 16);
  throwsNamed(() => SafetensorsFile.open(f('overlap')), TensorOverlapError, /"a" and "b"/);

  rawSafetensors(f('meta'), { __metadata__: { n: 3 }, ...ok }, 16);
  throwsNamed(() => SafetensorsFile.open(f('meta')), SafetensorsHeaderError, /__metadata__\.n/);

  throwsNamed(() => SafetensorsFile.open(f('does-not-exist')), SafetensorsOpenError, /ENOENT/);

  // a real file cut short (an interrupted download)
  rawSafetensors(f('cut'), ok, 16);
  truncateSync(f('cut'), readFileSync(f('cut')).length - 5);
  throwsNamed(() => SafetensorsFile.open(f('cut')), TruncatedSafetensorsError);

  rawSafetensors(f('good'), ok, 16);
  const st = SafetensorsFile.open(f('good'));
  throwsNamed(() => st.entry('missing.weight'), MissingTensorError, /"missing\.weight".*good/);
  throwsNamed(() => st.read('missing.weight'), MissingTensorError);
  st.close();
  // all of them are ModelLoadError, which the CLI reports without a stack trace
  assert.throws(() => SafetensorsFile.open(f('tiny')), ModelLoadError);
});

test('writer: failures leave no file and no temp file behind', async () => {
  const sub = tempDir('writer');
  const target = path.join(sub, 'out.safetensors');
  const specs = [{ name: 'a', dtype: 'F32' as const, shape: [2] }, { name: 'b', dtype: 'F32' as const, shape: [2] }];
  await assert.rejects(writeSafetensors(target, specs, (n) => { if (n === 'b') throw new Error('producer failed'); return new Uint8Array(8); }), /producer failed/);
  assert.deepEqual(readdirSync(sub), []);
  await assert.rejects(writeSafetensors(target, specs, () => new Uint8Array(4)), (e: unknown) => e instanceof SafetensorsWriteSpecError && /needs 8 bytes.*gave 4/.test(e.message));
  assert.deepEqual(readdirSync(sub), []);
  await assert.rejects(writeSafetensors(target, [specs[0], specs[0]], () => new Uint8Array(8)), SafetensorsWriteSpecError);
  await assert.rejects(writeSafetensors(path.join(sub, 'no', 'such', 'dir.safetensors'), specs, () => new Uint8Array(8)), (e: unknown) => e instanceof Error && e.name === 'SafetensorsWriteError');
  assert.deepEqual(readdirSync(sub), []);
});

test('writer: a full disk gives DiskFullError and removes the temp file', (t) => {
  // A 64 KiB tmpfs in a private mount namespace fills up for real without touching the host disk.
  // Where namespaces are not allowed (some CI sandboxes) the test is skipped, not faked.
  const mnt = tempDir('full');
  const writer = pathToFileURL(path.join(REPO_ROOT, 'dist', 'src', 'formats', 'safetensorsWriter.js')).href;
  const script = [
    `import { writeSafetensors } from ${JSON.stringify(writer)};`,
    'import { readdirSync } from "node:fs";',
    `const dir = ${JSON.stringify(mnt)};`,
    'try { await writeSafetensors(dir + "/big.safetensors", [{ name: "w", dtype: "U8", shape: [1 << 20] }], () => new Uint8Array(1 << 20)); console.log("wrote"); }',
    'catch (e) { console.log(JSON.stringify({ name: e.name, message: e.message, left: readdirSync(dir) })); }',
  ].join('\n');
  const sh = `mount -t tmpfs -o size=64k none ${mnt} || exit 77; exec ${JSON.stringify(process.execPath)} --input-type=module -e '${script.replace(/'/g, "'\\''")}'`;
  const run = spawnSync('unshare', ['-rm', 'sh', '-c', sh], { encoding: 'utf8' });
  if (run.error || run.status === 77 || /unshare/.test(run.stderr)) {
    t.skip(`cannot mount a small tmpfs here (${run.error?.message ?? run.stderr.trim()})`);
    return;
  }
  const out = JSON.parse(run.stdout.trim()) as { name: string; message: string; left: string[] };
  assert.equal(out.name, 'DiskFullError');
  assert.match(out.message, /disk is full/);
  assert.deepEqual(out.left, [], 'the temp file was removed');
});

test('sharded writer + WeightStore: shards, index, lazy reads, missing shard', async () => {
  const sub = tempDir('shards');
  const r = rng(7);
  const data = new Map<string, Float32Array>();
  const specs = Array.from({ length: 5 }, (_, i) => {
    const name = `layer.${i}.weight`;
    data.set(name, Float32Array.from({ length: 6 }, () => r()));
    return { name, dtype: 'F32' as const, shape: [2, 3] };
  });
  const files = await writeShardedSafetensors(sub, specs, (n) => u8(data.get(n) as Float32Array), { shardBytes: 50, metadata: { by: 'test' } });
  assert.deepEqual(files, ['model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors']);
  const index = JSON.parse(readFileSync(path.join(sub, 'model.safetensors.index.json'), 'utf8')) as { metadata: { total_size: number }; weight_map: Record<string, string> };
  assert.equal(index.metadata.total_size, 5 * 24);
  assert.equal(index.weight_map['layer.4.weight'], 'model-00003-of-00003.safetensors');

  for (const source of [sub, path.join(sub, 'model.safetensors.index.json')]) {
    const store = WeightStore.open(source);
    assert.deepEqual(store.names().sort(), specs.map((s) => s.name).sort());
    for (const s of specs) assert.deepEqual(asFloat32(store.read(s.name)), data.get(s.name));
    assert.equal(store.entry('layer.2.weight').file, path.join(sub, 'model-00002-of-00003.safetensors'));
    throwsNamed(() => store.read('nope'), MissingTensorError);
    store.close();
  }
  const single = WeightStore.open(sub, 'model-00001-of-00003.safetensors');
  assert.deepEqual(single.names(), ['layer.0.weight', 'layer.1.weight']);
  single.close();

  const { rmSync } = await import('node:fs');
  rmSync(path.join(sub, 'model-00002-of-00003.safetensors'));
  throwsNamed(() => WeightStore.open(sub), MissingShardError, /model-00002-of-00003\.safetensors/);

  writeFileSync(path.join(sub, 'model.safetensors.index.json'), '{"weight_map": {"x": "../../etc/passwd"}}');
  throwsNamed(() => WeightStore.open(sub), ShardIndexError);
  writeFileSync(path.join(sub, 'model.safetensors.index.json'), '{"weight_map": {"layer.0.weight": "model-00003-of-00003.safetensors"}}');
  throwsNamed(() => WeightStore.open(sub), ShardIndexError, /does not hold it/);
  writeFileSync(path.join(sub, 'model.safetensors.index.json'), 'not json');
  throwsNamed(() => WeightStore.open(sub), ShardIndexError);

  // fits in one shard → model.safetensors, and the stale index goes away
  const files1 = await writeShardedSafetensors(sub, specs, (n) => u8(data.get(n) as Float32Array));
  assert.deepEqual(files1, ['model.safetensors']);
  assert.ok(!existsSync(path.join(sub, 'model.safetensors.index.json')));
  const one = SafetensorsFile.open(path.join(sub, 'model.safetensors'));
  assert.deepEqual(one.metadata, { format: 'pt' });
  one.close();
});
