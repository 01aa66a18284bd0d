import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  dequantizeGptq, GptqPackError, GptqShapeError, loadGptqLinear, packGptq, quantizeConfigFromDir, QuantizeConfigError,
  QuantizeConfigMismatchError, unpackQweight, unpackQzeros, type GptqBits, type GptqLinearHost, type QuantizeConfig,
} from '../../src/formats/gptq.js';
import { floatToHalf, halfToFloat, MissingTensorError } from '../../src/formats/safetensors.js';
import { writeSafetensors, type TensorSpec } from '../../src/formats/safetensorsWriter.js';
import { WeightStore } from '../../src/formats/weightStore.js';
import { rng, tempDir } from './formatsSupport.js';

const dir = tempDir('gptq');
const IN = 256;
const OUT = 64;
const BITS: GptqBits[] = [2, 3, 4, 8];
const GROUP_SIZES = [-1, 32, 64, 128];

// --- the reference: the formula written out plainly, one bit at a time ----------------------

/** Bit `b` (0 = LSB) of a stream of 32-bit words given as a list. */
function bitOf(words: number[], b: number): number {
  const word = words[Math.floor(b / 32)] >>> 0;
  return Math.floor(word / 2 ** (b % 32)) % 2;
}
/** Value k of a stream of `bits`-bit values, assembled bit by bit. */
function valueOf(words: number[], k: number, bits: number): number {
  let v = 0;
  for (let j = 0; j < bits; j++) v += bitOf(words, k * bits + j) * 2 ** j;
  return v;
}
/** W[o][i] = scales[g][o] · (q[i][o] − (z[g][o] + 1)), g = gIdx[i], from the packed tensors. */
function referenceDequant(l: GptqLinearHost): number[][] {
  const wordsPerCol = (IN * l.bits) / 32;
  const zeroWords = (OUT * l.bits) / 32;
  const zeroRows = Array.from({ length: l.groups }, (_, g) => Array.from({ length: zeroWords }, (_, c) => l.qzeros[g * zeroWords + c])); // qzeros[g, :]
  const W: number[][] = [];
  for (let o = 0; o < OUT; o++) {
    const column = Array.from({ length: wordsPerCol }, (_, r) => l.qweight[r * OUT + o]); // qweight[:, o]
    const row: number[] = [];
    for (let i = 0; i < IN; i++) {
      const g = l.gIdx[i];
      const q = valueOf(column, i, l.bits);
      const z = valueOf(zeroRows[g], o, l.bits);
      row.push(Math.fround(halfToFloat(l.scales[g * OUT + o]) * (q - (z + 1))));
    }
    W.push(row);
  }
  return W;
}

function assertMatchesReference(l: GptqLinearHost, label: string): void {
  const w = dequantizeGptq(l); // [out, in]
  const ref = referenceDequant(l);
  for (let o = 0; o < OUT; o++) {
    for (let i = 0; i < IN; i++) {
      if (w[o * IN + i] !== ref[o][i]) assert.fail(`${label}: W[${o}, ${i}] = ${w[o * IN + i]}, reference ${ref[o][i]}`);
    }
  }
}

// --- random layers ---------------------------------------------------------------------------

interface Case { bits: GptqBits; groupSize: number; actOrder: boolean; sym: boolean; label: string }
const cases: Case[] = BITS.flatMap((bits) => GROUP_SIZES.flatMap((groupSize) => [false, true].flatMap((actOrder) =>
  [false, true].map((sym) => ({ bits, groupSize, actOrder, sym, label: `${bits}-bit g${groupSize}${actOrder ? ' act-order' : ''}${sym ? ' sym' : ''}` })))));

/** Unpacked values of a random layer: q, true zeros, scales and g_idx, seeded per case. */
function randomLayer(c: Case, seed: number): { q: Uint8Array; zeros: Uint8Array; scales: Float32Array; gIdx: Int32Array; groups: number } {
  const r = rng(seed);
  const maxq = 2 ** c.bits - 1;
  const gs = c.groupSize === -1 ? IN : c.groupSize;
  const groups = Math.ceil(IN / gs);
  const q = Uint8Array.from({ length: IN * OUT }, () => Math.floor(r() * (maxq + 1)));
  const zeros = Uint8Array.from({ length: groups * OUT }, () => (c.sym ? 2 ** (c.bits - 1) : 1 + Math.floor(r() * maxq)));
  const scales = Float32Array.from({ length: groups * OUT }, () => halfToFloat(floatToHalf((r() - 0.5) * 0.1)));
  // act-order: GPTQ quantizes columns in a permuted order and records each row's group
  const order = Array.from({ length: IN }, (_, i) => i);
  if (c.actOrder) for (let i = IN - 1; i > 0; i--) { const j = Math.floor(r() * (i + 1)); [order[i], order[j]] = [order[j], order[i]]; }
  const gIdx = new Int32Array(IN);
  order.forEach((row, k) => { gIdx[row] = Math.floor(k / gs); });
  return { q, zeros, scales, gIdx, groups };
}

function hostFrom(c: Case, seed: number): GptqLinearHost {
  const L = randomLayer(c, seed);
  const p = packGptq({ bits: c.bits, groupSize: c.groupSize, inFeatures: IN, outFeatures: OUT, q: L.q, zeros: c.sym ? undefined : L.zeros, scales: L.scales, gIdx: L.gIdx, sym: c.sym });
  const gs = c.groupSize === -1 ? IN : c.groupSize;
  return { kind: 'gptq', inFeatures: IN, outFeatures: OUT, bits: c.bits, groupSize: gs, groups: L.groups, actOrder: c.actOrder && L.groups > 1, ...p };
}

test('pack → unpack round trip and dequantization, every bits × groupsize × act-order × sym', () => {
  for (const [k, c] of cases.entries()) {
    const L = randomLayer(c, 1000 + k);
    const host = hostFrom(c, 1000 + k);
    assert.deepEqual(unpackQweight(host), L.q, `${c.label}: q`);
    assert.deepEqual(unpackQzeros(host), L.zeros.map((z) => z - 1), `${c.label}: stored zeros are zero − 1`);
    assert.deepEqual(host.gIdx, L.gIdx);
    // dequantized = scale · (q − true zero), from the unpacked inputs
    const w = dequantizeGptq(host);
    for (let i = 0; i < IN; i += 7) {
      for (let o = 0; o < OUT; o += 5) {
        const g = L.gIdx[i];
        assert.equal(w[o * IN + i], Math.fround(L.scales[g * OUT + o] * (L.q[i * OUT + o] - L.zeros[g * OUT + o])), c.label);
      }
    }
    assertMatchesReference(host, c.label);
  }
});

test('dequantization of arbitrary random packed words (every bit pattern, zeros stored up to 2^bits − 1)', () => {
  for (const [k, c] of cases.entries()) {
    const r = rng(77 + k);
    const host = hostFrom(c, 5 + k);
    const words = (n: number): Int32Array => Int32Array.from({ length: n }, () => (r() * 2 ** 32) | 0);
    const noisy: GptqLinearHost = { ...host, qweight: words(host.qweight.length), qzeros: c.sym ? host.qzeros : words(host.qzeros.length) };
    assertMatchesReference(noisy, `${c.label} random words`);
  }
});

test('3-bit packing is GPTQ-for-LLaMa\'s 32 values in 3 words', () => {
  // The procedure of GPTQ-for-LLaMa's QuantLinear.pack for 3 bits, restated step by step:
  // word 0 takes values 0–9 at 3·j and the low 2 bits of value 10 at bit 30; word 1 takes the
  // high bit of value 10 at bit 0, values 11–20 at 3·j + 1 and the low bit of value 21 at bit 31;
  // word 2 takes the high 2 bits of value 21 at bit 0 and values 22–31 at 3·j + 2.
  const v = Array.from({ length: 32 }, (_, i) => (i * 5 + 3) % 8);
  const w = [0, 0, 0];
  for (let j = 0; j < 10; j++) w[0] |= v[j] << (3 * j);
  w[0] |= v[10] << 30;
  w[1] |= (v[10] >> 2) & 1;
  for (let j = 0; j < 10; j++) w[1] |= v[11 + j] << (3 * j + 1);
  w[1] |= v[21] << 31;
  w[2] |= (v[21] >> 1) & 3;
  for (let j = 0; j < 10; j++) w[2] |= v[22 + j] << (3 * j + 2);

  const q = new Uint8Array(32 * 32); // [in = 32, out = 32]; column 0 carries v
  v.forEach((x, i) => { q[i * 32] = x; });
  const p = packGptq({ bits: 3, groupSize: -1, inFeatures: 32, outFeatures: 32, q, zeros: new Uint8Array(32).fill(4), scales: new Float32Array(32).fill(1) });
  assert.deepEqual([p.qweight[0], p.qweight[32], p.qweight[64]], [...Int32Array.from(w)]);
});

test('packGptq refuses values it cannot store', () => {
  const base = { bits: 4 as const, groupSize: 32, inFeatures: 64, outFeatures: 32, q: new Uint8Array(64 * 32), zeros: new Uint8Array(2 * 32).fill(8), scales: new Float32Array(2 * 32) };
  assert.throws(() => packGptq({ ...base, zeros: new Uint8Array(64) }), GptqPackError); // zero 0 → v1 would store −1
  assert.throws(() => packGptq({ ...base, q: new Uint8Array(64 * 32).fill(16) }), GptqPackError);
  assert.throws(() => packGptq({ ...base, scales: new Float32Array(3) }), GptqPackError);
  assert.throws(() => packGptq({ ...base, inFeatures: 60, q: new Uint8Array(60 * 32) }), GptqPackError);
  assert.throws(() => packGptq({ ...base, sym: true, zeros: new Uint8Array(64).fill(7) }), GptqPackError);
  assert.throws(() => packGptq({ ...base, gIdx: new Int32Array(64).fill(2) }), GptqPackError);
});

// --- files: write every case with writeSafetensors, read back through WeightStore --------------

function tensorsOf(prefix: string, host: GptqLinearHost, withGIdx: boolean): { spec: TensorSpec; bytes: Uint8Array }[] {
  const b = (a: Int32Array | Uint16Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const out = [
    { spec: { name: `${prefix}.qweight`, dtype: 'I32' as const, shape: [(host.inFeatures * host.bits) / 32, host.outFeatures] }, bytes: b(host.qweight) },
    { spec: { name: `${prefix}.qzeros`, dtype: 'I32' as const, shape: [host.groups, (host.outFeatures * host.bits) / 32] }, bytes: b(host.qzeros) },
    { spec: { name: `${prefix}.scales`, dtype: 'F16' as const, shape: [host.groups, host.outFeatures] }, bytes: b(host.scales) },
  ];
  if (withGIdx) out.push({ spec: { name: `${prefix}.g_idx`, dtype: 'I32' as const, shape: [host.inFeatures] }, bytes: b(host.gIdx) });
  return out;
}

async function writeTensors(file: string, tensors: { spec: TensorSpec; bytes: Uint8Array }[]): Promise<WeightStore> {
  const byName = new Map(tensors.map((t) => [t.spec.name, t.bytes]));
  await writeSafetensors(file, tensors.map((t) => t.spec), (n) => byName.get(n) as Uint8Array);
  return WeightStore.open(file);
}

test('every case written with writeSafetensors, loaded with loadGptqLinear, matches the reference', async () => {
  const tensors = cases.flatMap((c, k) => tensorsOf(`model.layers.${k}.proj`, hostFrom(c, 300 + k), true));
  // old GPTQ-for-LLaMa files have no g_idx: the trivial i / groupsize is assumed
  const noGIdx = cases.filter((c) => !c.actOrder);
  tensors.push(...noGIdx.flatMap((c, k) => tensorsOf(`old.${k}.proj`, hostFrom(c, 900 + k), false)));
  const store = await writeTensors(path.join(dir, 'all-cases.safetensors'), tensors);
  try {
    for (const [k, c] of cases.entries()) {
      const qc: QuantizeConfig = { bits: c.bits, groupSize: c.groupSize, descAct: c.actOrder, sym: c.sym };
      const l = loadGptqLinear(store, `model.layers.${k}.proj`, IN, OUT, c.groupSize === -1 ? { ...qc, descAct: undefined } : qc);
      assert.equal(l.bits, c.bits, c.label);
      assert.equal(l.groupSize, c.groupSize === -1 ? IN : c.groupSize, c.label);
      assert.equal(l.actOrder, c.actOrder && c.groupSize !== -1, c.label);
      if (c.sym) assert.equal(l.sym, true, c.label);
      assertMatchesReference(l, `${c.label} (file)`);
      assert.deepEqual(dequantizeGptq(l), dequantizeGptq(hostFrom(c, 300 + k)));
    }
    for (const [k, c] of noGIdx.entries()) {
      const l = loadGptqLinear(store, `old.${k}.proj`, IN, OUT); // no quantize_config: all from shapes
      assert.equal(l.actOrder, false);
      assert.deepEqual(l.gIdx, hostFrom(c, 900 + k).gIdx);
      assertMatchesReference(l, `${c.label} (no g_idx)`);
    }
  } finally {
    store.close();
  }
});

test('a short last group (in not a multiple of groupsize) is read from g_idx or quantize_config', async () => {
  const c: Case = { bits: 4, groupSize: 96, actOrder: true, sym: false, label: 'g96' }; // 256 = 96 + 96 + 64
  const host = hostFrom(c, 42);
  assert.equal(host.groups, 3);
  const store = await writeTensors(path.join(dir, 'short-group.safetensors'), [...tensorsOf('a', host, true), ...tensorsOf('b', host, false)]);
  try {
    assert.equal(loadGptqLinear(store, 'a', IN, OUT).groupSize, 96);
    assert.equal(loadGptqLinear(store, 'b', IN, OUT, { groupSize: 96 }).groupSize, 96);
    assert.throws(() => loadGptqLinear(store, 'b', IN, OUT), (e: unknown) => e instanceof GptqShapeError && /quantize_config/.test(e.message));
  } finally {
    store.close();
  }
});

test('GPTQ shapes that disagree each give a named error naming the tensor', async () => {
  const good = hostFrom({ bits: 4, groupSize: 64, actOrder: true, sym: false, label: '' }, 9);
  const t = tensorsOf('p', good, true);
  const variants: Record<string, { spec: TensorSpec; bytes: Uint8Array }[]> = {
    bits5: t.map((x) => (x.spec.name === 'p.qweight' ? { spec: { ...x.spec, shape: [40, OUT] }, bytes: new Uint8Array(40 * OUT * 4) } : x)),
    qweightOut: t.map((x) => (x.spec.name === 'p.qweight' ? { spec: { ...x.spec, shape: [32, OUT * 2] }, bytes: new Uint8Array(32 * OUT * 8) } : x)),
    qzerosCols: t.map((x) => (x.spec.name === 'p.qzeros' ? { spec: { ...x.spec, shape: [4, 16] }, bytes: new Uint8Array(4 * 16 * 4) } : x)),
    scalesOut: t.map((x) => (x.spec.name === 'p.scales' ? { spec: { ...x.spec, shape: [4, 32] }, bytes: new Uint8Array(4 * 32 * 2) } : x)),
    scalesDtype: t.map((x) => (x.spec.name === 'p.scales' ? { spec: { ...x.spec, dtype: 'F32' as const }, bytes: new Uint8Array(4 * OUT * 4) } : x)),
    gIdxLen: t.map((x) => (x.spec.name === 'p.g_idx' ? { spec: { ...x.spec, shape: [128] }, bytes: new Uint8Array(128 * 4) } : x)),
    gIdxRange: t.map((x) => (x.spec.name === 'p.g_idx' ? { spec: x.spec, bytes: new Uint8Array(Int32Array.from({ length: IN }, () => 9).buffer) } : x)),
    missing: t.filter((x) => x.spec.name !== 'p.qzeros'),
  };
  const expect: Record<string, [new (...a: never[]) => Error, RegExp]> = {
    bits5: [GptqShapeError, /p\.qweight.*5 bits/],
    qweightOut: [GptqShapeError, /p\.qweight.*shape \[32, 128\]/],
    qzerosCols: [GptqShapeError, /p\.qzeros.*expected \[4, 8\]/],
    scalesOut: [GptqShapeError, /p\.scales/],
    scalesDtype: [GptqShapeError, /p\.scales is F32, expected F16/],
    gIdxLen: [GptqShapeError, /p\.g_idx.*expected \[256\]/],
    gIdxRange: [GptqShapeError, /p\.g_idx.*outside/],
    missing: [MissingTensorError, /p\.qzeros/],
  };
  for (const [name, tensors] of Object.entries(variants)) {
    const store = await writeTensors(path.join(dir, `bad-${name}.safetensors`), tensors);
    const [cls, re] = expect[name];
    assert.throws(() => loadGptqLinear(store, 'p', IN, OUT), (e: unknown) => {
      assert.ok(e instanceof cls, `${name}: got ${String(e)}`);
      assert.equal((e as Error).name, cls.name);
      assert.match((e as Error).message, re, name);
      return true;
    });
    store.close();
  }
});

test('quantize_config.json that disagrees with the tensors gives QuantizeConfigMismatchError', async () => {
  const act = hostFrom({ bits: 4, groupSize: 64, actOrder: true, sym: false, label: '' }, 11);
  const plain = hostFrom({ bits: 4, groupSize: 64, actOrder: false, sym: false, label: '' }, 12);
  const store = await writeTensors(path.join(dir, 'qc.safetensors'), [...tensorsOf('act', act, true), ...tensorsOf('plain', plain, true), ...tensorsOf('old', plain, false)]);
  const mismatch = (prefix: string, qc: QuantizeConfig, re: RegExp): void =>
    assert.throws(() => loadGptqLinear(store, prefix, IN, OUT, qc), (e: unknown) => e instanceof QuantizeConfigMismatchError && e.name === 'QuantizeConfigMismatchError' && re.test(e.message));
  try {
    mismatch('act', { bits: 8 }, /8 bits.*4-bit/);
    mismatch('act', { groupSize: 128 }, /group_size 128/);
    mismatch('act', { groupSize: -1 }, /group_size -1/);
    mismatch('act', { descAct: false }, /desc_act false/);
    mismatch('plain', { descAct: true }, /desc_act true.*trivial/);
    mismatch('old', { descAct: true }, /no g_idx/);
    mismatch('act', { sym: true }, /sym true/);
    assert.equal(loadGptqLinear(store, 'act', IN, OUT, { bits: 4, groupSize: 64, descAct: true, sym: false }).actOrder, true);
  } finally {
    store.close();
  }
});

test('quantizeConfigFromDir reads AutoGPTQ\'s file and rejects a broken one', () => {
  const sub = tempDir('qc');
  assert.equal(quantizeConfigFromDir(sub), undefined);
  writeFileSync(path.join(sub, 'quantize_config.json'), JSON.stringify({ bits: 4, group_size: 128, desc_act: true, sym: false, damp_percent: 0.01 }));
  assert.deepEqual(quantizeConfigFromDir(sub), { bits: 4, groupSize: 128, descAct: true, sym: false });
  writeFileSync(path.join(sub, 'quantize_config.json'), '{"bits": 4,');
  assert.throws(() => quantizeConfigFromDir(sub), QuantizeConfigError);
  writeFileSync(path.join(sub, 'quantize_config.json'), '{"bits": "4"}');
  assert.throws(() => quantizeConfigFromDir(sub), (e: unknown) => e instanceof QuantizeConfigError && /"bits"/.test(e.message));
});
