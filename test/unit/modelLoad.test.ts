import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Activation, Backend, EmbeddingWeight, KvCache, LinearHost, LinearWeight, VectorWeight } from '../../src/backends/backend.js';
import { GptqShapeError, gptqLayout, loadGptqLinear, type GptqPlan } from '../../src/formats/gptq.js';
import { setPacked } from '../../src/formats/gptqPacking.js';
import { SafetensorsClosedError, SafetensorsFile, toFloat32, TruncatedSafetensorsError } from '../../src/formats/safetensors.js';
import { WeightStore } from '../../src/formats/weightStore.js';
import { LlamaModel } from '../../src/model/llama.js';
import { synthesize } from '../../src/synth/synth.js';
import { rawSafetensors, tempDir } from './formatsSupport.js';

const dir = tempDir('load');
const SHAPE = { hidden: 256, ffn: 512, layers: 2, heads: 4, vocab: 320 };

/** Hashes what each upload is given (at upload time, as a copying backend sees it); runs no ops. */
class RecordingBackend implements Backend {
  readonly name = 'recording';
  readonly uploads: string[] = [];
  constructor(readonly uploadCopiesHostData: boolean, private readonly failAt = -1) {}
  private record(kind: string, arrays: readonly (ArrayBufferView | undefined)[]): void {
    if (this.uploads.length === this.failAt) throw new Error('upload failed on purpose');
    const h = createHash('sha1').update(kind);
    for (const a of arrays) if (a) h.update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
    this.uploads.push(`${kind}:${h.digest('hex')}`);
  }
  allocActivation(rows: number, cols: number): Activation { return { rows, cols }; }
  writeActivation(): void { throw new Error('no ops'); }
  readActivation(): Float32Array { throw new Error('no ops'); }
  uploadLinear(w: LinearHost): LinearWeight {
    if (w.kind === 'dense') this.record('dense', [w.data, w.bias]);
    else this.record(`gptq${w.bits}/${w.groupSize}/${w.actOrder}/${w.sym}`, [w.qweight, w.qzeros, w.scales, w.gIdx, w.bias]);
    return { inFeatures: w.inFeatures, outFeatures: w.outFeatures };
  }
  uploadVector(data: Float32Array): VectorWeight { this.record('vector', [data]); return { length: data.length }; }
  uploadEmbedding(data: Uint16Array, vocab: number, dim: number): EmbeddingWeight { this.record('embed', [data]); return { vocab, dim }; }
  allocKvCache(layers: number, maxSeq: number, kvHeads: number, headDim: number): KvCache { return { layers, maxSeq, kvHeads, headDim }; }
  embed(): void { throw new Error('no ops'); }
  rmsNorm(): void { throw new Error('no ops'); }
  linear(): void { throw new Error('no ops'); }
  rope(): void { throw new Error('no ops'); }
  writeKv(): void { throw new Error('no ops'); }
  attention(): void { throw new Error('no ops'); }
  swiglu(): void { throw new Error('no ops'); }
  copyRows(): void { throw new Error('no ops'); }
  addInPlace(): void { throw new Error('no ops'); }
  ropeRows(): void { throw new Error('no ops'); }
  writeKvRows(): void { throw new Error('no ops'); }
  attentionRows(): void { throw new Error('no ops'); }
  dispose(): void {}
}

/** The uploads the plain synchronous reader (loadGptqLinear per linear) would give, in load order. */
function expectedGptqUploads(modelDir: string): string[] {
  const store = WeightStore.open(modelDir);
  const b = new RecordingBackend(false);
  const dim = SHAPE.hidden, ffn = SHAPE.ffn;
  const half = (n: string): Uint16Array => new Uint16Array(new Uint8Array(store.read(n)).buffer);
  const vec = (n: string): void => { b.uploadVector(toFloat32('F16', store.read(n))); };
  const lin = (p: string, i: number, o: number): void => { b.uploadLinear(loadGptqLinear(store, p, i, o)); };
  for (let l = 0; l < SHAPE.layers; l++) {
    const p = `model.layers.${l}`;
    vec(`${p}.input_layernorm.weight`);
    for (const m of ['q', 'k', 'v', 'o']) lin(`${p}.self_attn.${m}_proj`, dim, dim);
    vec(`${p}.post_attention_layernorm.weight`);
    lin(`${p}.mlp.gate_proj`, dim, ffn); lin(`${p}.mlp.up_proj`, dim, ffn); lin(`${p}.mlp.down_proj`, ffn, dim);
  }
  b.uploadEmbedding(half('model.embed_tokens.weight'), SHAPE.vocab, dim);
  b.uploadLinear({ kind: 'dense', inFeatures: dim, outFeatures: SHAPE.vocab, data: half('lm_head.weight') });
  vec('model.norm.weight');
  store.close();
  return b.uploads;
}
for (const actOrder of [false, true]) {
  test(`the pipelined load uploads exactly what the plain reader reads, fresh or recycled buffers${actOrder ? ' (act-order)' : ''}`, async () => {
    const modelDir = path.join(dir, actOrder ? 'ao' : 'plain');
    await synthesize({ shape: SHAPE, bits: 4, groupSize: 64, actOrder, out: modelDir, seed: 3 });
    const want = expectedGptqUploads(modelDir);
    for (const recycle of [false, true]) {
      const b = new RecordingBackend(recycle);
      const m = await LlamaModel.create(modelDir, { backend: b, contextLength: 16 });
      assert.equal(m.info.gptq?.actOrder, actOrder);
      assert.deepEqual(b.uploads, want, recycle ? 'recycled' : 'fresh');
      m.dispose();
    }
  });
}

test('a load that fails mid-way (upload error, bad g_idx values) rejects with that error after its reads settle', async () => {
  const modelDir = path.join(dir, 'fail');
  await synthesize({ shape: SHAPE, bits: 4, groupSize: 64, actOrder: false, out: modelDir, seed: 4 });
  for (const recycle of [false, true]) {
    await assert.rejects(LlamaModel.create(modelDir, { backend: new RecordingBackend(recycle, 5), contextLength: 16 }), /upload failed on purpose/);
  }
  // g_idx of layer 1's up_proj pointing past the groups: found after reading, with later reads in flight
  const file = path.join(modelDir, 'model.safetensors');
  const st = SafetensorsFile.open(file);
  const e = st.entry('model.layers.1.mlp.up_proj.g_idx');
  st.close();
  const bytes = readFileSync(file);
  bytes.writeInt32LE(99, e.offset + 4 * 10);
  writeFileSync(file, bytes);
  await assert.rejects(LlamaModel.create(modelDir, { backend: new RecordingBackend(false), contextLength: 16 }), (err: unknown) => err instanceof GptqShapeError && /up_proj\.g_idx.*g_idx\[10\] = 99/.test(err.message));
});

test('readAsync: chunked reads equal read(), into a given buffer; shrunk, closed and wrong-size reads fail by name', async () => {
  const file = path.join(dir, 'async.safetensors');
  const big = 20_000_003; // three 8 MiB chunks, the last one short
  rawSafetensors(file, { a: { dtype: 'U8', shape: [5], data_offsets: [0, 5] }, big: { dtype: 'U8', shape: [big], data_offsets: [5, 5 + big] } }, 5 + big);
  const bytes = readFileSync(file);
  for (let i = 0; i < 1000; i++) bytes[bytes.length - 1 - i * 9973] = i & 255; // recognisable tail, across chunks
  writeFileSync(file, bytes);
  const st = SafetensorsFile.open(file);
  assert.deepEqual(Buffer.from(await st.readAsync('big')), st.read('big'));
  const into = new Uint8Array(5);
  assert.equal(await st.readAsync('a', into), into);
  assert.deepEqual(into, new Uint8Array(st.read('a')));
  await assert.rejects(st.readAsync('a', new Uint8Array(4)), RangeError);
  truncateSync(file, 5_000_000);
  await assert.rejects(st.readAsync('big'), (err: unknown) => err instanceof TruncatedSafetensorsError && err.name === 'TruncatedSafetensorsError');
  st.close();
  await assert.rejects(st.readAsync('a'), SafetensorsClosedError);
});

test('zero-point symmetry is checked word by word for every width, including 3-bit values that straddle words', () => {
  const out = 64, groups = 3;
  for (const bits of [2, 3, 4, 8] as const) {
    const stored = (1 << (bits - 1)) - 1;
    const plan: GptqPlan = { prefix: 'p', inFeatures: 192, outFeatures: out, bits, groups, names: { qweight: 'q', qzeros: 'z', scales: 's' } };
    const cols = (out * bits) / 32;
    const zeros = (flip?: { g: number; o: number }): Int32Array => {
      const z = new Int32Array(groups * cols);
      for (let g = 0; g < groups; g++) for (let o = 0; o < out; o++) setPacked(z, g * cols, 1, o, bits, flip && flip.g === g && flip.o === o ? stored ^ 1 : stored);
      return z;
    };
    assert.equal(gptqLayout(plan, zeros(), undefined).sym, true, `${bits}-bit`);
    for (const o of [0, 10, 21, 31, 63]) assert.equal(gptqLayout(plan, zeros({ g: 2, o }), undefined).sym, false, `${bits}-bit value ${o}`);
  }
  const plan: GptqPlan = { prefix: 'p', inFeatures: 192, outFeatures: 64, bits: 4, groups: 3, names: { qweight: 'q', qzeros: 'z', scales: 's' } };
  assert.throws(() => gptqLayout(plan, new Int32Array(24), Int32Array.from({ length: 192 }, () => 3)), GptqShapeError);
});
