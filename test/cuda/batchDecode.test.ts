/**
 * The CUDA batched decode (continuous batching) against the CPU backend on fresh random inputs,
 * outputs poisoned first: ropeRows, writeKvRows + attentionRows (row t: its own KV cache and
 * position), and the small-batch int4 linear (gemv_q4_rows). The oracle is the CPU backend's
 * one-sequence ops run row by row (rope / writeKv / attention at startPos = positions[t]) and its
 * linear, so the check does not lean on any batched CPU code. Skipped, saying why, without a GPU.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CpuBackend } from '../../src/backends/cpu/cpuBackend.js';
import type { Activation, Backend, KvCache, LinearHost } from '../../src/backends/backend.js';
import type { GptqLinearHost } from '../../src/formats/gptqTypes.js';
import { groupContiguousPerm, type CudaLinear } from '../../src/backends/cuda/linearUpload.js';
import { SMALL_BATCH_MAX_ROWS, smallBatchFits, smallBatchKPerBlock } from '../../src/backends/cuda/smallBatchLinear.js';
import { gpu, input, int8RoundTrip, normErr, poisoned, randn, randomGptq, skipNoGpu } from './support.js';

const cpu = new CpuBackend({ int8Gemv: false });
/** fp16 inside the kernels (KV cache; x and dequantized weights of the linear) bounds agreement to ~1e-3 */
const HALF_TOL = 4e-3;
const ROPE_TOL = 1e-5;
/** gemv_q4_multi quantizes x to int8 per 32 values as the one-row GEMV (ops.test.ts says why these bounds) */
const INT8_TOL = 2e-2;
const INT8_EXACT_TOL = 1e-4;

/** B positions spread over [0, long]: 0 and `long` always among them (B ≥ 2), the rest random. */
function spread(B: number, long: number): Int32Array {
  const p = Int32Array.from({ length: B }, () => Math.floor(Math.random() * (long + 1)));
  p[0] = B === 1 ? long : 0;
  if (B > 1) p[1] = long;
  return p;
}

function rowOf(x: Float32Array, t: number, width: number): Float32Array {
  return x.subarray(t * width, (t + 1) * width);
}

test('gemv_q4_rows plan: K ranges are multiples of 128 that cover K and fit the staged x', () => {
  for (const nt of [1, 2] as const) {
    for (const [K, tiles, sms] of [[5120, 40, 132], [13824, 40, 132], [5120, 108, 132], [128, 1, 132], [2816, 8, 46], [640, 1000, 132]]) {
      const per = smallBatchKPerBlock(K, tiles, sms, nt);
      assert.equal(per % 128, 0, `K ${K}: ${per}`);
      assert.ok(per >= 128 && per <= (nt === 1 ? 2048 : 1024), `K ${K} nt ${nt}: ${per}`);
      assert.ok(Math.ceil(K / per) * per >= K);
    }
    // a K of at most 8 slices (tiny models) is one range: sums independent of block order
    for (const K of [128, 256, 768, 1024]) assert.equal(smallBatchKPerBlock(K, 2, 132, nt), K);
  }
});

test('ropeRows: row t rotated at positions[t], one table per step (an array reused and changed in place)', { skip: skipNoGpu }, () => {
  const g = gpu();
  for (const [heads, headDim] of [[8, 128], [4, 64], [2, 256]]) {
    for (const B of [1, 3, 8, 16]) {
      const width = heads * headDim;
      const positions = spread(B, 4000);
      // two steps with the same Int32Array, changed in place between them (the backend caches the table by content)
      for (let step = 0; step < 2; step++) {
        if (step === 1) for (let t = 0; t < B; t++) positions[t] += 1 + t;
        const x = randn(B * width);
        const a = input(g, B, width, x);
        g.ropeRows(a, heads, headDim, positions, 10000, B);
        const got = g.readActivation(a);
        const want = new Float32Array(B * width);
        for (let t = 0; t < B; t++) {
          const r = input(cpu, 1, width, rowOf(x, t, width));
          cpu.rope(r, heads, headDim, positions[t], 10000, 1);
          want.set(cpu.readActivation(r), t * width);
        }
        const err = normErr(got, want);
        assert.ok(err < ROPE_TOL, `ropeRows ${heads}x${headDim} B=${B} step ${step}: err ${err}`);
      }
    }
  }
});

interface Seqs {
  readonly caches: KvCache[];
}

/** B caches on `b` (each its own maxSeq), layer `layer` filled with `hist[t]` at positions 0..positions[t]−1. */
function seqsWithHistory(b: Backend, maxSeqs: number[], layers: number, layer: number, kvHeads: number, headDim: number,
  positions: Int32Array, hist: { k: Float32Array; v: Float32Array }[]): Seqs {
  const width = kvHeads * headDim;
  const caches = maxSeqs.map((m) => b.allocKvCache(layers, m, kvHeads, headDim));
  positions.forEach((p, t) => {
    if (p > 0) b.writeKv(caches[t], layer, 0, input(b, p, width, hist[t].k), input(b, p, width, hist[t].v), p);
  });
  return { caches };
}

/**
 * B sequences whose caches (layer 1 of 2; maxSeq, maxSeq − 64, maxSeq − 128, ...) hold random histories up to positions
 * spread over [0, long], on the GPU and on the CPU alike, for the attention tests.
 */
function attentionFixture(heads: number, kvHeads: number, d: number, B: number, maxSeq: number, long: number): {
  layer: number; width: number; qWidth: number; positions: Int32Array; gs: Seqs; cs: Seqs; shape: { layer: number; heads: number; kvHeads: number; headDim: number };
} {
  const layers = 2, layer = 1;
  const width = kvHeads * d, qWidth = heads * d;
  const maxSeqs = Array.from({ length: B }, (_, t) => maxSeq - 64 * (t % 3));
  const positions = spread(B, long);
  const hist = Array.from(positions, (p) => ({ k: randn(p * width), v: randn(p * width) }));
  const gs = seqsWithHistory(gpu(), maxSeqs, layers, layer, kvHeads, d, positions, hist);
  const cs = seqsWithHistory(cpu, maxSeqs, layers, layer, kvHeads, d, positions, hist);
  return { layer, width, qWidth, positions, gs, cs, shape: { layer, heads, kvHeads, headDim: d } };
}

test('writeKvRows + attentionRows: each row over its own cache (own maxSeq), positions 0..long, grouped heads, two steps', { skip: skipNoGpu }, () => {
  const g = gpu();
  for (const [heads, kvHeads, d] of [[8, 8, 128], [8, 2, 64], [4, 4, 256]]) {
    for (const B of [1, 3, 8, 16]) {
      const { layer, width, qWidth, positions, gs, cs, shape } = attentionFixture(heads, kvHeads, d, B, 2048, 1900);
      for (let step = 0; step < 2; step++) {
        const k = randn(B * width), v = randn(B * width), q = randn(B * qWidth);
        const out = poisoned(g, B, qWidth);
        g.writeKvRows(gs.caches, layer, positions, input(g, B, width, k), input(g, B, width, v), B);
        g.attentionRows(out, input(g, B, qWidth, q), gs.caches, shape, positions, B);
        const got = g.readActivation(out);
        const want = new Float32Array(B * qWidth);
        for (let t = 0; t < B; t++) {
          cpu.writeKv(cs.caches[t], layer, positions[t], input(cpu, 1, width, rowOf(k, t, width)), input(cpu, 1, width, rowOf(v, t, width)), 1);
          const o = cpu.allocActivation(1, qWidth);
          cpu.attention(o, input(cpu, 1, qWidth, rowOf(q, t, qWidth)), cs.caches[t], { ...shape, startPos: positions[t] }, 1);
          want.set(cpu.readActivation(o), t * qWidth);
        }
        for (let t = 0; t < B; t++) {
          const err = normErr(rowOf(got, t, qWidth), rowOf(want, t, qWidth));
          assert.ok(err < HALF_TOL, `attentionRows ${heads}/${kvHeads}x${d} B=${B} step ${step} row ${t} (position ${positions[t]}): err ${err}`);
        }
        for (let t = 0; t < B; t++) positions[t] += 1; // the next token of every sequence
      }
    }
  }
});

test('ropeKvRows (rope of q and k and the KV write in one launch) + attentionRows: as the CPU\'s rope, writeKv and attention per row', { skip: skipNoGpu }, () => {
  const g = gpu();
  const theta = 10000;
  for (const [heads, kvHeads, d] of [[8, 8, 128], [8, 2, 64]]) {
    for (const B of [2, 4, 16]) {
      const { layer, width, qWidth, positions, gs, cs, shape } = attentionFixture(heads, kvHeads, d, B, 1024, 900);
      const k = randn(B * width), v = randn(B * width), q = randn(B * qWidth);
      const qg = input(g, B, qWidth, q), out = poisoned(g, B, qWidth);
      g.ropeKvRows(qg, input(g, B, width, k), input(g, B, width, v), gs.caches, layer, positions, { heads, kvHeads, headDim: d, theta }, B);
      const qRot = g.readActivation(qg);
      g.attentionRows(out, qg, gs.caches, shape, positions, B);
      const got = g.readActivation(out);
      for (let t = 0; t < B; t++) {
        const qc = input(cpu, 1, qWidth, rowOf(q, t, qWidth)), kc = input(cpu, 1, width, rowOf(k, t, width));
        cpu.rope(qc, heads, d, positions[t], theta, 1);
        cpu.rope(kc, kvHeads, d, positions[t], theta, 1);
        const qWant = cpu.readActivation(qc);
        assert.ok(normErr(rowOf(qRot, t, qWidth), qWant) < ROPE_TOL, `q row ${t}`);
        cpu.writeKv(cs.caches[t], layer, positions[t], kc, input(cpu, 1, width, rowOf(v, t, width)), 1);
        const o = cpu.allocActivation(1, qWidth);
        cpu.attention(o, qc, cs.caches[t], { ...shape, startPos: positions[t] }, 1);
        const err = normErr(rowOf(got, t, qWidth), cpu.readActivation(o));
        assert.ok(err < HALF_TOL, `ropeKvRows ${heads}/${kvHeads}x${d} B=${B} row ${t} (position ${positions[t]}): err ${err}`);
      }
    }
  }
  // a position outside a cache is refused, as writeKvRows refuses it
  const caches = [g.allocKvCache(1, 16, 2, 64), g.allocKvCache(1, 32, 2, 64)];
  const kv = input(g, 2, 128, randn(256));
  assert.throws(() => g.ropeKvRows(input(g, 2, 256, randn(512)), kv, kv, caches, 0, Int32Array.from([3, 32]), { heads: 4, kvHeads: 2, headDim: 64, theta }, 2), /holds 32 positions/);
});

test('writeKvRows / attentionRows refuse a position outside a cache', { skip: skipNoGpu }, () => {
  const g = gpu();
  const caches = [g.allocKvCache(1, 16, 2, 64), g.allocKvCache(1, 32, 2, 64)];
  const kv = input(g, 2, 128, randn(256));
  assert.throws(() => g.writeKvRows(caches, 0, Int32Array.from([3, 32]), kv, kv, 2), /holds 32 positions/);
  assert.throws(() => g.attentionRows(poisoned(g, 2, 256), input(g, 2, 256, randn(512)), caches, { layer: 0, heads: 4, kvHeads: 2, headDim: 64 },
    Int32Array.from([16, 0]), 2), /holds 16 positions/);
});

/**
 * linear and linearAdd on the GPU (small-batch path asserted) against the CPU's linear, rows of x at once.
 * `xCpu`: what the CPU oracle multiplies instead of x (gemv_q4_multi's int8 round trip of it).
 */
function checkSmallBatch(name: string, w: LinearHost, rows: number, tol = HALF_TOL, xCpu?: (x: Float32Array) => Float32Array): void {
  const g = gpu();
  const x = randn(rows * w.inFeatures), resid = randn(rows * w.outFeatures);
  const lw = g.uploadLinear(w);
  const opts = { maxRows: g.smallBatchMaxRows, multiMaxRows: g.multiMaxRows, smCount: g.smCount };
  assert.ok(smallBatchFits(lw as CudaLinear, rows, opts), `${name}: rows ${rows} should take the small-batch path`);
  const out = poisoned(g, rows, w.outFeatures);
  g.linear(out, input(g, rows, w.inFeatures, x), lw, rows);
  const acc: Activation = input(g, rows, w.outFeatures, resid);
  g.linearAdd(acc, input(g, rows, w.inFeatures, x), lw, rows);
  const co = poisoned(cpu, rows, w.outFeatures);
  cpu.linear(co, input(cpu, rows, w.inFeatures, xCpu ? xCpu(x) : x), cpu.uploadLinear(w), rows);
  const want = cpu.readActivation(co);
  const err = normErr(g.readActivation(out), want);
  assert.ok(err < tol, `${name} rows=${rows}: err ${err}`);
  const errAdd = normErr(g.readActivation(acc), Float32Array.from(want, (v, i) => v + resid[i]));
  assert.ok(errAdd < tol, `${name} linearAdd rows=${rows}: err ${errAdd}`);
}

/** The staging order of x in the int4 GEMVs (their blocks of 32 for int8): the act-order group order, else identity. */
function stagingOrder(w: GptqLinearHost): Int32Array | null {
  return w.actOrder ? groupContiguousPerm(w.gIdx, w.groupSize) : null;
}

/** int8RoundTrip of each row of x ([rows, K]) in the kernel's staging order. */
function int8Rows(x: Float32Array, K: number, order: Int32Array | null): Float32Array {
  const out = new Float32Array(x.length);
  for (let r = 0; r < x.length / K; r++) out.set(int8RoundTrip(x.subarray(r * K, (r + 1) * K), order), r * K);
  return out;
}

const SMALL_BATCH_CASES: [number, number, number, boolean][] = [
  [5120, 1024, 128, true], [5120, 1024, 128, false], [512, 384, 128, false], [768, 256, 64, true], [256, 520, 32, false],
  [640, 136, -1, false], [2816, 1000, 32, true], [13824, 256, 128, true],
];

/** Runs `body` with the small-batch kernels on and gemv_q4_multi serving up to `multiRows` rows, then restores both switches. */
function withSmallBatch(multiRows: number, body: () => void): void {
  const g = gpu();
  const before = [g.smallBatchMaxRows, g.multiMaxRows];
  try {
    g.smallBatchMaxRows = SMALL_BATCH_MAX_ROWS;
    g.multiMaxRows = multiRows;
    body();
  } finally {
    [g.smallBatchMaxRows, g.multiMaxRows] = before;
  }
}

/** f on a fresh random weight of each SMALL_BATCH_CASES shape, with its name for messages. */
function forEachCase(f: (w: GptqLinearHost, name: string) => void): void {
  for (const [k, n, gs, ao] of SMALL_BATCH_CASES) f(randomGptq(k, n, 4, gs, ao), `q4 ${k}x${n} g${gs}${ao ? ' act-order' : ''}`);
}

test('linear: gemv_q4_multi for 2..8 rows (launches of up to 4), int8 x, group sizes 32..128, act-order, partial tiles', { skip: skipNoGpu }, () => {
  withSmallBatch(8, () => forEachCase((w, name) => {
    const order = stagingOrder(w);
    for (const rows of [2, 3, 4, 5, 8]) {
      checkSmallBatch(name, w, rows, INT8_TOL);
      checkSmallBatch(`${name}, oracle on the same int8 x`, w, rows, INT8_EXACT_TOL, (x) => int8Rows(x, w.inFeatures, order));
    }
  }));
});

test('linear: gemv_q4_rows for 2..16 rows (and 17..32 in launches of 16), group sizes 32..128, act-order, partial tiles', { skip: skipNoGpu }, () => {
  withSmallBatch(0, () => {
    forEachCase((w, name) => {
      for (const rows of [2, 3, 8, 9, 16]) checkSmallBatch(name, w, rows);
    });
    const w = randomGptq(1280, 520, 4, 128, true);
    for (const rows of [17, 32]) checkSmallBatch('q4 1280x520 g128 act-order (two launches)', w, rows);
  });
});

test('gemv_q4_rows takes 2..maxRows rows of 4-bit q4 weights only', () => {
  const base = { kind: 'gptq', bits: 4, layout: 'q4', inFeatures: 512, outFeatures: 256, groupSize: 128 } as unknown as CudaLinear;
  const opts = { maxRows: 16, multiMaxRows: 0, smCount: 132 };
  assert.equal(smallBatchFits(base, 1, opts), false);
  assert.equal(smallBatchFits(base, 2, opts), true);
  assert.equal(smallBatchFits(base, 16, opts), true);
  assert.equal(smallBatchFits(base, 17, opts), false);
  assert.equal(smallBatchFits(base, 4, { ...opts, maxRows: 0 }), false);
  assert.equal(smallBatchFits({ ...base, layout: 'generic' } as CudaLinear, 4, opts), false);
  assert.equal(smallBatchFits({ ...base, bits: 8 } as CudaLinear, 4, opts), false);
  assert.equal(smallBatchFits({ kind: 'dense', inFeatures: 512, outFeatures: 256 } as unknown as CudaLinear, 4, opts), false);
});

/**
 * Batched decode's fused launches (gemv_q4_multi over several matrices): q/k/v through `linears` and gate/up with
 * SwiGLU through `gateUp`, 2..4 rows, against the CPU's linear (and swiglu) of each; members of one group may have
 * act-order permutations of their own.
 */
test('linears (q/k/v) and gateUp (gate/up + SwiGLU): one gemv_q4_multi launch for 2..4 rows', { skip: skipNoGpu }, () => {
  withSmallBatch(4, () => {
    const g = gpu();
    for (const [K, N, gs, ao] of [[5120, 640, 128, true], [768, 256, 64, false], [1024, 1000, 32, true]] as [number, number, number, boolean][]) {
      // (v narrower, a multiple of 8 that packs: the tiles of three widths back to back)
      const qkv = [randomGptq(K, N, 4, gs, ao), randomGptq(K, N, 4, gs, ao), randomGptq(K, Math.floor(N / 16) * 8, 4, gs, ao)];
      const [gate, up] = [randomGptq(K, N, 4, gs, ao), randomGptq(K, N, 4, gs, ao)];
      const name = `K ${K} N ${N} g${gs}${ao ? ' act-order' : ''}`;
      for (const rows of [2, 3, 4]) {
        const x = randn(rows * K);
        const xg = input(g, rows, K, x);
        // each output against the CPU's linear of the same int8 x, staged in that member's order
        const outs = qkv.map((w) => poisoned(g, rows, w.outFeatures));
        assert.ok(g.linears(outs, xg, qkv.map((w) => g.uploadLinear(w)), rows), `${name}: linears takes ${rows} rows`);
        qkv.forEach((w, i) => {
          const co = poisoned(cpu, rows, w.outFeatures);
          cpu.linear(co, input(cpu, rows, K, int8Rows(x, K, stagingOrder(w))), cpu.uploadLinear(w), rows);
          const err = normErr(g.readActivation(outs[i]), cpu.readActivation(co));
          assert.ok(err < INT8_EXACT_TOL, `${name} linears member ${i} rows=${rows}: err ${err}`);
        });
        // gate/up + SwiGLU
        const h = poisoned(g, rows, N);
        assert.ok(g.gateUp(h, xg, g.uploadLinear(gate), g.uploadLinear(up), rows), `${name}: gateUp takes ${rows} rows`);
        const [cg, cu] = [gate, up].map((w) => {
          const o = poisoned(cpu, rows, N);
          cpu.linear(o, input(cpu, rows, K, int8Rows(x, K, stagingOrder(w))), cpu.uploadLinear(w), rows);
          return o;
        });
        const ch = poisoned(cpu, rows, N);
        cpu.swiglu(ch, cg, cu, rows);
        const err = normErr(g.readActivation(h), cpu.readActivation(ch));
        assert.ok(err < 1e-3, `${name} gateUp rows=${rows}: err ${err}`);
      }
    }
    // one row, or more than one launch holds: not taken (the model runs the linears one by one)
    const w = g.uploadLinear(randomGptq(768, 256, 4, 128, false));
    assert.equal(g.linears([poisoned(g, 1, 256)], input(g, 1, 768, randn(768)), [w], 1), false);
    assert.equal(g.linears([poisoned(g, 5, 256)], input(g, 5, 768, randn(5 * 768)), [w], 5), false);
  });
});
