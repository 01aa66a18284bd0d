/**
 * Prompt producers that write only the form their declared reader reads (CudaBackend.halfOnly): the q/k/v rope launch
 * writes q as attn_flash_wg_128's fp16 Q tile, attention and the fused gate/up's SwiGLU write only the fp16 copies
 * o_proj and down_proj read. The chain q/k/v → attention → o_proj, and gate/up → down_proj, must give the same
 * results with and without them (each kernel rounds the same values the same way; only split-K adds reorder, and
 * attention, which has none, gives the same bits from the Q tile), leave the f32 rows unwritten (the NaN poison stays),
 * write them where the reader does not read the copy (an act-order o_proj), and throw where a kernel would read what
 * was not written. The chain without them is checked against the CPU by gemmWgmma.test.ts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { HalfOnlyProducer } from '../../src/backends/cuda/halfCopies.js';
import { gpu, input, launchesOf, normErr, poisoned, randn, randomGptq, skipNoGpu } from './support.js';

const skip: false | string = skipNoGpu ||
  (gpu().wgmmaFits ? false : `${gpu().deviceName} is not a compute capability 9.0 GPU (or lacks cuTensorMapEncodeTiled): no register-A GEMM to test`);
const ALL: HalfOnlyProducer[] = ['norm', 'swiglu', 'attention', 'q'];

test('q as the Q tile, attention and SwiGLU as fp16 copies only: o_proj and down_proj as with the f32 chain, f32 rows unwritten, an act-order o_proj gets them, a stray reader throws', { skip }, () => {
  const g = gpu();
  // [hidden (heads of 128), intermediate, group size, act-order q/k/v and gate/up, act-order o_proj, rows, first position]
  const cases: [number, number, number, boolean, boolean, number, number][] = [
    [768, 1280, 128, true, false, 600, 0], [1280, 1792, 32, false, false, 900, 37], [1024, 2048, 128, false, true, 700, 5],
  ];
  const before = { halfOnly: new Set(g.halfOnly), fill: g.rsMinFill, split: g.rsSplitFill, flash: g.flashKernel };
  g.rsMinFill = 0; // the register-A GEMMs at every row count (the q/k/v rope and SwiGLU launches that take the hints)
  g.rsSplitFill = 0; // whole tiles: no K split, whose atomic adds would sum in any order
  try {
    for (const [n, inter, gs, ao, oAo, rows, start] of cases) {
      const name = `hidden ${n} inter ${inter} g${gs}${ao ? ' act-order' : ''}${oAo ? ' act-order o_proj' : ''} rows=${rows} at ${start}`;
      const heads = n / 128, shape = { heads, kvHeads: heads, headDim: 128, theta: 10000 };
      const q = randomGptq(n, n, 4, gs, ao), gate = randomGptq(n, inter, 4, gs, ao);
      const ws = [q, ...[1, 2].map(() => ({ ...randomGptq(n, n, 4, gs, ao), gIdx: q.gIdx }))].map((h) => g.uploadLinear(h));
      const G = g.uploadLinear(gate), U = g.uploadLinear({ ...randomGptq(n, inter, 4, gs, ao), gIdx: gate.gIdx });
      const O = g.uploadLinear(randomGptq(n, n, 4, 128, oAo)), D = g.uploadLinear(randomGptq(inter, n, 4, 128, false));
      const x = randn(rows * n), r1 = randn(rows * n), r2 = randn(rows * n), past = randn(Math.max(start, 1) * n);
      const run = (on: boolean): { q: Float32Array; attn: Float32Array; hidden: Float32Array; o: Float32Array; down: Float32Array; kernels: string[] } => {
        g.halfOnly = new Set(on ? ALL : []);
        const cache = g.allocKvCache(1, start + rows + 8, heads, 128);
        if (start > 0) g.writeKv(cache, 0, 0, input(g, start, n, past), input(g, start, n, past), start);
        const xa = input(g, rows, n, x), ys = [0, 1, 2].map(() => poisoned(g, rows, n)), attn = poisoned(g, rows, n);
        const hidden = poisoned(g, rows, inter), o = input(g, rows, n, r1), down = input(g, rows, n, r2);
        const kernels = launchesOf(g, () => {
          assert.equal(g.qkvRopeKv(ys, xa, ws, cache, 0, start, shape, rows, 'attention'), true, `${name}: q/k/v rope`);
          g.attention(attn, ys[0], cache, { layer: 0, startPos: start, heads, kvHeads: heads, headDim: 128 }, rows, O);
          g.linearAdd(o, attn, O, rows);
          assert.equal(g.gateUp(hidden, xa, G, U, rows, D), true, `${name}: gate/up`);
          g.linearAdd(down, hidden, D, rows);
        });
        return { q: g.readActivation(ys[0]), attn: g.readActivation(attn), hidden: g.readActivation(hidden), o: g.readActivation(o),
          down: g.readActivation(down), kernels };
      };
      const on = run(true), off = run(false);
      assert.ok(on.kernels.includes('attn_flash_wg_128'), `${name}: ${on.kernels.join(' ')}`);
      assert.ok(on.q.every(Number.isNaN), `${name}: q's f32 rows were written`);
      assert.ok(on.hidden.every(Number.isNaN), `${name}: SwiGLU's f32 rows were written`);
      if (oAo) {
        assert.ok(on.attn.every((v) => !Number.isNaN(v)), `${name}: attention's f32 rows unwritten for an o_proj that reads them`);
        const d = on.attn.findIndex((v, i) => !Object.is(v, off.attn[i]));
        assert.equal(d, -1, `${name}: attention from the Q tile differs at ${d}: ${on.attn[d]} vs ${off.attn[d]}`);
      } else assert.ok(on.attn.every(Number.isNaN), `${name}: attention's f32 rows were written`);
      for (const [what, a] of [['q', off.q], ['attention', off.attn], ['SwiGLU', off.hidden]] as const) {
        assert.ok(a.every((v) => !Number.isNaN(v)), `${name}: ${what}'s f32 rows unwritten with the hints off`);
      }
      // the same fp16 inputs: equal up to the order of a split launch's atomic adds (these small launches split K)
      assert.ok(normErr(on.o, off.o) < 1e-6, `${name}: o_proj's output, err ${normErr(on.o, off.o)}`);
      assert.ok(normErr(on.down, off.down) < 1e-6, `${name}: down_proj's output, err ${normErr(on.down, off.down)}`);
    }

    // a reader of rows left unwritten throws rather than read the poison
    const n = 768, rows = 600, heads = 6, shape = { heads, kvHeads: heads, headDim: 128, theta: 10000 };
    const ws = [0, 1, 2].map(() => g.uploadLinear(randomGptq(n, n, 4, 128, false)));
    const O = g.uploadLinear(randomGptq(n, n, 4, 128, false)), other = g.uploadLinear(randomGptq(n, n, 4, 128, true));
    g.halfOnly = new Set(ALL);
    const cache = g.allocKvCache(1, rows, heads, 128), xa = input(g, rows, n, randn(rows * n));
    const ys = [0, 1, 2].map(() => poisoned(g, rows, n)), attn = poisoned(g, rows, n);
    const att = { layer: 0, startPos: 0, heads, kvHeads: heads, headDim: 128 };
    assert.equal(g.qkvRopeKv(ys, xa, ws, cache, 0, 0, shape, rows, 'attention'), true);
    g.flashKernel = 'mma'; // attention by another kernel, which would read the f32 q
    assert.throws(() => g.attention(attn, ys[0], cache, att, rows, O), /Q tile/);
    g.flashKernel = before.flash;
    const y = poisoned(g, rows, n); // (before: a host write forgets what the copies hold, the unwritten mark too)
    assert.equal(g.qkvRopeKv(ys, xa, ws, cache, 0, 0, shape, rows, 'attention'), true);
    g.attention(attn, ys[0], cache, att, rows, O);
    // an act-order linear would convert attention's f32 rows through its permutation
    assert.throws(() => g.linear(y, attn, other, rows), /f32 rows were not written/);
  } finally {
    g.halfOnly = before.halfOnly;
    g.rsMinFill = before.fill;
    g.rsSplitFill = before.split;
    g.flashKernel = before.flash;
  }
});

test('attention behind the q/k/v rope launch (attnOverlap: it waits on per-head tile counts, not for the launch): the same bits as after it, over several layers and chunks', { skip }, () => {
  const g = gpu();
  // 20 heads of 128 at 2048 rows: 480 tiles, 4 rounds on 132 SMs (q/k/v as one launch: it fills them better than one
  // weight's 160 tiles), whose last leaves 48 SMs to the attention of heads 0–8, done by then (RS_QKV_OVERLAP_MIN_ROUNDS)
  const n = 2560, heads = 20, rows = 2048, layers = 3, shape = { heads, kvHeads: heads, headDim: 128, theta: 10000 };
  const before = { overlap: g.attnOverlap, halfOnly: new Set(g.halfOnly), fill: g.rsMinFill };
  g.rsMinFill = 0;
  g.halfOnly = new Set(ALL);
  try {
    const ws = Array.from({ length: layers }, () => [0, 1, 2].map(() => g.uploadLinear(randomGptq(n, n, 4, 128, false))));
    const x = randn(rows * n);
    const run = (overlap: boolean): Float32Array[] => {
      g.attnOverlap = overlap;
      const overlapped = g.attnOverlapLaunches;
      const cache = g.allocKvCache(layers, 2 * rows, heads, 128), xa = input(g, rows, n, x);
      const ys = [0, 1, 2].map(() => poisoned(g, rows, n)), outs = [0, 1].flatMap(() => ws.map(() => poisoned(g, rows, n)));
      // two chunks (the second after the first's cache), each through every layer's q/k/v and attention
      for (let chunk = 0; chunk < 2; chunk++) {
        for (let l = 0; l < layers; l++) {
          assert.equal(g.qkvRopeKv(ys, xa, ws[l], cache, l, chunk * rows, shape, rows, 'attention'), true);
          g.attention(outs[chunk * layers + l], ys[0], cache, { layer: l, startPos: chunk * rows, heads, kvHeads: heads, headDim: 128 }, rows);
        }
      }
      assert.equal(g.attnOverlapLaunches - overlapped, overlap ? 2 * layers : 0, 'attention launches that overlapped q/k/v');
      return outs.map((o) => g.readActivation(o));
    };
    const on = run(true), off = run(false);
    on.forEach((o, i) => {
      assert.ok(o.every((v) => Number.isFinite(v)), `output ${i}: not finite with the overlap`);
      const d = o.findIndex((v, j) => !Object.is(v, off[i][j]));
      assert.equal(d, -1, `output ${i} differs at ${d}: ${o[d]} with the overlap, ${off[i][d]} without`);
    });
  } finally {
    g.attnOverlap = before.overlap;
    g.halfOnly = before.halfOnly;
    g.rsMinFill = before.fill;
  }
});

test('QLLAMA_CUDA_HALF_ONLY: a comma list of producers, none, or all by default; an unknown name throws', async () => {
  const { halfOnlyFromEnv } = await import('../../src/backends/cuda/halfCopies.js');
  assert.deepEqual([...halfOnlyFromEnv({})].sort(), [...ALL].sort());
  assert.deepEqual([...halfOnlyFromEnv({ QLLAMA_CUDA_HALF_ONLY: 'none' })], []);
  assert.deepEqual([...halfOnlyFromEnv({ QLLAMA_CUDA_HALF_ONLY: 'q, swiglu' })].sort(), ['q', 'swiglu']);
  assert.deepEqual([...halfOnlyFromEnv({ QLLAMA_CUDA_NORM_HALF_ONLY: '0' })].sort(), ['attention', 'q', 'swiglu']);
  assert.throws(() => halfOnlyFromEnv({ QLLAMA_CUDA_HALF_ONLY: 'norm,rope' }), /unknown producer 'rope'.*norm, swiglu, attention, q/);
});
