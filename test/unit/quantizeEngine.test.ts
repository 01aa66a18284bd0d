import { test } from 'node:test';
import assert from 'node:assert/strict';
import { attention } from '../../src/backends/cpu/kernels/attention.js';
import { floatToHalf } from '../../src/formats/half.js';
import { QuantEngine } from '../../src/quantize/engine.js';
import { decodeHalf, encodeHalf } from '../../src/quantize/half16.js';
import { HessianAccumulator } from '../../src/quantize/hessian.js';
import { linearRows } from '../../src/quantize/kernels.js';
import { lcg } from './quantizeSupport.js';

function engine(threads: number): QuantEngine {
  const e = QuantEngine.create(threads);
  assert.ok(e, 'WebAssembly SIMD is available in Node 20');
  return e;
}

function random(n: number, seed: number): Float32Array {
  const r = lcg(seed);
  return Float32Array.from({ length: n }, () => r() - 0.5);
}

function maxRelErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]) / (1 + Math.abs(b[i])));
  return m;
}

test('engine linear equals the plain loops at edge shapes (rows, outputs not multiples of the block), 1 and 3 threads bit-identical', () => {
  const e1 = engine(1), e3 = engine(3);
  try {
    for (const [rows, inF, outF] of [[1, 4, 1], [7, 12, 5], [67, 64, 131], [130, 256, 96]]) {
      const x = random(rows * inF, rows), w = random(outF * inF, outF);
      const want = new Float32Array(rows * outF);
      linearRows(want, x, w, rows, inF, outF);
      const got = [e1, e3].map((e) => {
        const xb = e.alloc(x.byteLength), ob = e.alloc(want.byteLength);
        xb.f32.set(x);
        e.linear(ob.ptr, xb.ptr, w, rows, inF, outF);
        return ob.f32.slice();
      });
      assert.ok(maxRelErr(got[0], want) < 1e-5, `${rows}×${inF}×${outF}`);
      assert.deepEqual(got[1], got[0], 'thread count changes nothing');
    }
  } finally {
    e1.dispose();
    e3.dispose();
  }
});

test('engine Hessian equals the plain accumulator (rows not a multiple of 4)', () => {
  const e = engine(2);
  try {
    const cols = 40, rows = 13;
    const plain = new HessianAccumulator(cols);
    const fast = new HessianAccumulator(cols, e, 'test');
    for (let s = 0; s < 3; s++) {
      const x = random(rows * cols, 100 + s);
      plain.add(x, rows);
      fast.add(x, rows);
    }
    assert.ok(maxRelErr(fast.hessian(), plain.hessian()) < 1e-5);
    assert.throws(() => fast.add(random(rows * cols, 1), rows), /after hessian/);
  } finally {
    e.dispose();
  }
});

test('engine causal attention equals the plain kernel (grouped KV heads, rows not a multiple of the block)', () => {
  const e = engine(2);
  try {
    const rows = 45, heads = 4, kvHeads = 2, hd = 8, kPad = 48;
    const dim = heads * hd, kvDim = kvHeads * hd;
    const q = random(rows * dim, 1), k = random(rows * kvDim, 2), v = random(rows * kvDim, 3);
    const want = new Float32Array(rows * dim);
    attention(want, q, k, v, rows, 0, heads, kvHeads, hd, new Float32Array(rows));
    const qb = e.alloc(q.byteLength), kb = e.alloc(k.byteLength), vt = e.alloc(kvDim * kPad * 4), ob = e.alloc(want.byteLength);
    qb.f32.set(q);
    kb.f32.set(k);
    for (let t = 0; t < rows; t++) for (let i = 0; i < kvDim; i++) vt.f32[i * kPad + t] = v[t * kvDim + i];
    const s = e.alloc(e.scoreBytes(kPad));
    e.attention(ob.ptr, qb.ptr, kb.ptr, vt.ptr, s.ptr, rows, kPad, heads, kvHeads, hd);
    assert.ok(maxRelErr(ob.f32, want) < 1e-5);
  } finally {
    e.dispose();
  }
});

test('bulk fp16 encode rounds like floatToHalf (normals, subnormals, ties, overflow, inf, NaN) and decodes back', () => {
  const r = lcg(5);
  const values = [0, -0, 1, -1, 65504, 65519, 65520, 1e9, -Infinity, Infinity, NaN, 2 ** -24, 2 ** -25, 3 * 2 ** -26, 2 ** -14, 1 + 2 ** -11, 1 + 3 * 2 ** -11];
  for (let i = 0; i < 2000; i++) values.push((r() - 0.5) * 2 ** Math.floor(r() * 40 - 28));
  const src = Float32Array.from(values);
  const got = new Uint16Array(src.length);
  encodeHalf(src, got);
  for (let i = 0; i < src.length; i++) assert.equal(got[i], floatToHalf(src[i]), `value ${src[i]}`);
  const back = new Float32Array(src.length);
  decodeHalf(got, back);
  for (let i = 0; i < src.length; i++) if (Number.isFinite(src[i]) && Math.abs(src[i]) < 65504) assert.ok(Math.abs(back[i] - src[i]) <= Math.abs(src[i]) * 2 ** -11 + 2 ** -25);
});
