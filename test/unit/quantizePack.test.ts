import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { dequantizeGptq, loadGptqLinear, unpackQweight, unpackQzeros } from '../../src/formats/gptq.js';
import { writeSafetensors } from '../../src/formats/safetensorsWriter.js';
import { WeightStore } from '../../src/formats/weightStore.js';
import { gptqQuantize } from '../../src/quantize/gptq.js';
import { packLinear } from '../../src/quantize/pack.js';
import { dequantize, type QuantizedLinear } from '../../src/quantize/types.js';
import { lcg } from './quantizeSupport.js';

/** Writes one quantized linear as GPTQ-for-LLaMa tensors and reads it back with the formats loader. */
async function roundTrip(ql: QuantizedLinear): Promise<{ deq: Float32Array; q: Uint8Array; zStored: Uint8Array; actOrder: boolean }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'qllama-pack-'));
  try {
    const file = path.join(dir, 'x.safetensors');
    const tensors = packLinear('model.layers.0.mlp.down_proj', ql);
    const byName = new Map(tensors.map((t) => [t.spec.name, t.bytes]));
    await writeSafetensors(file, tensors.map((t) => t.spec), (n) => byName.get(n) as Uint8Array, { format: 'pt' });
    const store = WeightStore.open(file);
    try {
      const layer = loadGptqLinear(store, 'model.layers.0.mlp.down_proj', ql.inFeatures, ql.outFeatures);
      assert.equal(layer.bits, ql.bits);
      assert.equal(layer.groups, ql.groups);
      return { deq: dequantizeGptq(layer), q: unpackQweight(layer), zStored: unpackQzeros(layer), actOrder: layer.actOrder };
    } finally {
      store.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function problem(rows: number, cols: number): { w: Float32Array; h: Float64Array } {
  const rnd = lcg(7);
  const w = Float32Array.from({ length: rows * cols }, () => (rnd() - 0.5) * 0.2);
  const h = new Float64Array(cols * cols);
  for (let i = 0; i < cols; i++) h[i * cols + i] = 0.5 + rnd() * 3; // distinct diagonal: act-order moves columns
  return { w, h };
}

for (const bits of [2, 3, 4, 8] as const) {
  for (const actOrder of [false, true]) {
    test(`pack → safetensors → formats reader gives back our weights: ${bits}-bit g16${actOrder ? ' act-order' : ''}`, async () => {
      const rows = 32, cols = 64;
      const { w, h } = problem(rows, cols);
      const ql = gptqQuantize(w, h, rows, cols, { bits, groupSize: 16, actOrder, staticGroups: false, sym: false, damp: 0.01 });
      const back = await roundTrip(ql);
      assert.deepEqual(back.q, ql.q, 'levels');
      for (let k = 0; k < back.zStored.length; k++) assert.equal(back.zStored[k], ql.zeros[k] - 1, 'zero stored minus one');
      assert.deepEqual(back.deq, dequantize(ql), 'dequantized weights');
      assert.equal(back.actOrder, actOrder);
    });
  }
}

test('symmetric 8-bit with one group per row round-trips', async () => {
  const rows = 32, cols = 64;
  const { w, h } = problem(rows, cols);
  const ql = gptqQuantize(w, h, rows, cols, { bits: 8, groupSize: -1, actOrder: false, staticGroups: false, sym: true, damp: 0.01 });
  assert.equal(ql.groups, 1);
  const back = await roundTrip(ql);
  assert.deepEqual(back.deq, dequantize(ql));
});
