/**
 * Every CUDA op against the CPU backend (the oracle) on fresh random inputs, outputs poisoned
 * first, compared by normalized error. Skipped, saying why, where no GPU answers (CI).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CpuBackend } from '../../src/backends/cpu/cpuBackend.js';
import type { Backend, LinearHost } from '../../src/backends/backend.js';
import type { GptqLinearHost } from '../../src/formats/gptqTypes.js';
import { groupContiguousPerm, type CudaGptq } from '../../src/backends/cuda/linearUpload.js';
import { gpu, input, int8RoundTrip, normErr, poisoned, randHalf, randn, randomGptq, skipNoGpu } from './support.js';

const cpu = new CpuBackend({ int8Gemv: false });
/** fp16 activations inside the kernels (GEMV inputs, KV cache) bound the agreement to about 1e-3. */
const HALF_TOL = 4e-3;
/**
 * One-row int4 GEMVs quantize x to int8 per 32 values (gemv_q4.cu, as llama.cpp's MMVQ): rounding of
 * ±step/2 with step ≈ 2σ/127 gives ≈ 5e-3 normalized error on random x (softmax amplifies it: attention
 * is checked on the GPU's own q, k, v).
 * Where the CPU oracle is given the same int8 round trip of x (int8RoundTrip), only f32 rounding is left.
 */
const INT8_TOL = 2e-2;
const INT8_EXACT_TOL = 1e-4;
const F32_TOL = 2e-5;

function both<T>(f: (b: Backend) => T): [T, T] {
  return [f(gpu()), f(cpu)];
}

test('embed', { skip: skipNoGpu }, () => {
  const vocab = 300, dim = 320, ids = Int32Array.from([5, 0, 299, 17]);
  const table = randHalf(vocab * dim);
  const [g, c] = both((b) => {
    const out = poisoned(b, 4, dim);
    b.embed(out, b.uploadEmbedding(table, vocab, dim), ids);
    return b.readActivation(out);
  });
  assert.ok(normErr(g, c) < F32_TOL, `embed err ${normErr(g, c)}`);
});

test('rmsNorm (out of place and in place)', { skip: skipNoGpu }, () => {
  // prompt rows take rmsnorm_rows_f32 up to dim 8192 (dim % 4 == 0), the one-block-per-row kernel past it
  for (const [rows, dim] of [[3, 5120], [70, 8192], [5, 100], [2, 8200]]) {
    for (const inPlace of [false, true]) {
      const x = randn(rows * dim, 3), w = randn(dim);
      const [g, c] = both((b) => {
        const xa = input(b, rows, dim, x);
        const out = inPlace ? xa : poisoned(b, rows, dim);
        b.rmsNorm(out, xa, b.uploadVector(w), 1e-6, rows);
        return b.readActivation(out);
      });
      assert.ok(normErr(g, c) < F32_TOL, `rmsnorm ${rows}x${dim}${inPlace ? ' in place' : ''} err ${normErr(g, c)}`);
    }
  }
});

test('rope at an offset, with grouped heads; prompt rows with head counts off the kernel\'s chunk of 8', { skip: skipNoGpu }, () => {
  for (const [rows, heads, headDim, start] of [[3, 8, 128, 1537], [300, 13, 64, 5], [2, 40, 128, 0]]) {
    const x = randn(rows * heads * headDim);
    const [g, c] = both((b) => {
      const a = input(b, rows, heads * headDim, x);
      b.rope(a, heads, headDim, start, 10000, rows);
      return b.readActivation(a);
    });
    assert.ok(normErr(g, c) < 1e-5, `rope ${rows}x${heads}x${headDim} err ${normErr(g, c)}`);
  }
});

test('ropeKv (prompt rows): the q and cache bits of rope, rope and writeKv (attention over either cache agrees bit for bit), near the CPU; one row declines', { skip: skipNoGpu }, () => {
  const g = gpu();
  for (const [rows, heads, kvHeads, d, start] of [[37, 8, 2, 128, 5], [300, 13, 13, 64, 0], [2, 40, 40, 128, 1000], [129, 4, 4, 256, 3]]) {
    const qw = heads * d, kw = kvHeads * d, maxSeq = start + rows + 8, theta = 10000;
    const qx = randn(rows * qw), kx = randn(rows * kw), vx = randn(rows * kw), past = randn(Math.max(start, 1) * kw), pastV = randn(Math.max(start, 1) * kw);
    const shape = { heads, kvHeads, headDim: d, theta };
    const attend = (b: Backend, fused: boolean): [Float32Array, Float32Array] => {
      const cache = b.allocKvCache(2, maxSeq, kvHeads, d);
      if (start > 0) b.writeKv(cache, 1, 0, input(b, start, kw, past), input(b, start, kw, pastV), start);
      const q = input(b, rows, qw, qx), k = input(b, rows, kw, kx), v = input(b, rows, kw, vx);
      if (fused) assert.ok(b.ropeKv?.(q, k, v, cache, 1, start, shape, rows), `ropeKv took ${rows} rows`);
      else {
        b.rope(q, heads, d, start, theta, rows);
        b.rope(k, kvHeads, d, start, theta, rows);
        b.writeKv(cache, 1, start, k, v, rows);
      }
      const out = poisoned(b, rows, qw);
      b.attention(out, q, cache, { layer: 1, startPos: start, heads, kvHeads, headDim: d }, rows);
      return [b.readActivation(q), b.readActivation(out)];
    };
    const [fq, fo] = attend(g, true), [sq, so] = attend(g, false), [, co] = attend(cpu, false);
    const name = `ropeKv ${rows}x${heads}/${kvHeads}x${d} at ${start}`;
    assert.equal(fq.findIndex((x, i) => !Object.is(x, sq[i])), -1, `${name}: q differs from rope's`);
    assert.equal(fo.findIndex((x, i) => !Object.is(x, so[i])), -1, `${name}: attention over the fused cache differs`);
    assert.ok(normErr(fo, co) < HALF_TOL, `${name} vs CPU: err ${normErr(fo, co)}`);
  }
  const cache = g.allocKvCache(1, 8, 2, 128), one = (w: number): ReturnType<typeof input> => input(g, 1, w, randn(w));
  assert.equal(g.ropeKv(one(256), one(256), one(256), cache, 0, 0, { heads: 2, kvHeads: 2, headDim: 128, theta: 10000 }, 1), false, 'one row: the GEMV batch folds it');
});

test('swiglu, addInPlace, copyRows', { skip: skipNoGpu }, () => {
  const rows = 2, n = 13824, gate = randn(rows * n, 3), up = randn(rows * n), y = randn(rows * n);
  const [g, c] = both((b) => {
    const out = poisoned(b, rows, n);
    b.swiglu(out, input(b, rows, n, gate), input(b, rows, n, up), rows);
    b.addInPlace(out, input(b, rows, n, y), rows);
    const last = poisoned(b, 1, n);
    b.copyRows(last, out, 1, 1);
    return [b.readActivation(out), b.readActivation(last)];
  });
  assert.ok(normErr(g[0], c[0]) < F32_TOL, `swiglu+add err ${normErr(g[0], c[0])}`);
  assert.ok(normErr(g[1], c[1]) < F32_TOL, `copyRows err ${normErr(g[1], c[1])}`);
});

test('argmax on the device', { skip: skipNoGpu }, () => {
  const b = gpu();
  for (const n of [32000, 4096, 7]) {
    const x = randn(n);
    const want = x.indexOf(Math.max(...x));
    assert.equal(b.argmax(input(b, 1, n, x)), want);
  }
});

/** `xCpu`: what the CPU oracle multiplies instead of x (the GPU kernel's int8 round trip of it). */
function checkLinear(name: string, w: LinearHost, rows: number, tol: number, xCpu?: (x: Float32Array) => Float32Array): void {
  const x = randn(rows * w.inFeatures);
  const resid = randn(rows * w.outFeatures);
  const [g, c] = both((b) => {
    const lw = b.uploadLinear(w);
    const xa = input(b, rows, w.inFeatures, b === cpu && xCpu ? xCpu(x) : x);
    const out = poisoned(b, rows, w.outFeatures);
    b.linear(out, xa, lw, rows);
    return b.readActivation(out);
  });
  const err = normErr(g, c);
  assert.ok(err < tol, `${name} rows=${rows}: err ${err}`);
  // the fused residual form: acc += x Wᵀ
  const gb = gpu();
  const acc = input(gb, rows, w.outFeatures, resid);
  gb.linearAdd(acc, input(gb, rows, w.inFeatures, x), gb.uploadLinear(w), rows);
  const want = Float32Array.from(c, (v, i) => v + resid[i]);
  const errAdd = normErr(gb.readActivation(acc), want);
  assert.ok(errAdd < tol, `${name} linearAdd rows=${rows}: err ${errAdd}`);
}

test('linear: GPTQ 4-bit, every group layout, GEMV and GEMM', { skip: skipNoGpu }, () => {
  const cases: [number, number, number, boolean][] = [
    [512, 384, 128, false], [512, 384, 128, true], [768, 256, 64, true], [256, 512, 32, false], [640, 128, -1, false],
    [5120, 1024, 128, true], [200, 96, 40, false], // last: shapes the fast kernel refuses (generic path)
  ];
  for (const [k, n, gs, ao] of cases) {
    const w = randomGptq(k, n, 4, gs, ao);
    const name = `q4 ${k}x${n} g${gs}${ao ? ' act-order' : ''}`;
    const order = fastGemvOrder(w);
    // a few rows of a fast-layout weight go to gemv_q4_multi, which stages x as int8 like the one-row GEMV
    for (const rows of [3, 70]) checkLinear(name, w, rows, order !== undefined && rows <= gpu().multiMaxRows ? INT8_TOL : HALF_TOL);
    if (order === undefined) checkLinear(name, w, 1, HALF_TOL); // the generic GEMV: f32 x
    else {
      checkLinear(`${name} int8 x`, w, 1, INT8_TOL);
      checkLinear(`${name} int8 x, oracle on the same int8 x`, w, 1, INT8_EXACT_TOL, (x) => int8RoundTrip(x, order));
    }
  }
});

/**
 * The order in which the one-row int4 GEMV stages x (its blocks of 32 for int8), or undefined where
 * the layer goes to the generic GEMV (linearUpload.ts: fastRowsPerGroup and groupContiguousPerm).
 */
function fastGemvOrder(w: GptqLinearHost): Int32Array | null | undefined {
  const gs = w.groupSize;
  // 2- and 3-bit layers of these shapes are widened to the q4 layout at upload (linearUpload.ts widensToQ4)
  if (w.bits === 8 || w.inFeatures % 128 !== 0 || w.outFeatures % 8 !== 0 || !(gs % 128 === 0 || gs === 64 || gs === 32)) return undefined;
  if (!w.actOrder) return null;
  return groupContiguousPerm(w.gIdx, gs) ?? undefined;
}

test('linear: GPTQ 4-bit GEMM for rows > 1 (mma.sync and the old wmma kernel), odd sizes, act-order', { skip: skipNoGpu }, () => {
  const cases: [number, number, number, boolean, number[]][] = [
    [1280, 520, 128, true, [2, 17, 130, 512]], [1280, 520, 128, false, [4, 512]], [768, 200, 64, false, [2, 5, 129]],
    [384, 136, 32, true, [3, 64, 257]], [5120, 1000, 128, true, [2, 33]], [2816, 1024, 128, false, [200]],
  ];
  const before = [gpu().prefillKernels, gpu().smallBatchMaxRows] as const;
  // the GEMMs themselves: rows 2..32 would go to the batched-decode kernels (tested in batchDecode.test.ts)
  gpu().smallBatchMaxRows = 0;
  try {
    for (const mode of ['mma', 'old'] as const) {
      gpu().prefillKernels = mode;
      for (const [k, n, gs, ao, rowsList] of cases) {
        const w = randomGptq(k, n, 4, gs, ao);
        for (const rows of rowsList) checkLinear(`gemm[${mode}] q4 ${k}x${n} g${gs}${ao ? ' act-order' : ''}`, w, rows, HALF_TOL);
      }
    }
  } finally {
    [gpu().prefillKernels, gpu().smallBatchMaxRows] = before;
  }
});

test('linear: GPTQ 8 bits, the q8 layout (gemv_q8: int8 x) and shapes that stay generic', { skip: skipNoGpu }, () => {
  const cases: [number, number, number, boolean][] = [[384, 256, 128, false], [1280, 520, 128, true], [768, 264, 64, true], [256, 512, 32, false], [5120, 1000, 128, true], [200, 96, 40, false]];
  for (const [k, n, gs, ao] of cases) {
    const w = randomGptq(k, n, 8, gs, ao);
    const name = `q8 ${k}x${n} g${gs}${ao ? ' act-order' : ''}`;
    const up = gpu().uploadLinear(w) as CudaGptq;
    const fast = k % 128 === 0 && gs % 32 === 0;
    assert.equal(up.layout, fast ? 'q8' : 'generic', `${name}: layout`);
    checkLinear(name, w, 70, HALF_TOL); // fast: dequant_q8_tile + the wgmma GEMM on sm_90; else the generic GEMM
    if (!fast) {
      for (const rows of [1, 5]) checkLinear(name, w, rows, HALF_TOL);
      continue;
    }
    for (const rows of [3, 9]) checkLinear(`${name} (gemv_q8_r4)`, w, rows, INT8_TOL); // launches of up to 4 rows
    checkLinear(name, w, 512, HALF_TOL);
    const order = ao ? groupContiguousPerm(w.gIdx, gs) : null;
    checkLinear(`${name} int8 x`, w, 1, INT8_TOL);
    checkLinear(`${name} int8 x, oracle on the same int8 x`, w, 1, INT8_EXACT_TOL, (x) => int8RoundTrip(x, order));
  }
});

test('linear: GPTQ 3 and 2 bits widened to the q4 layout (every 4-bit kernel), and shapes that stay generic', { skip: skipNoGpu }, () => {
    // (3-bit packing needs both dimensions × 3 to fill whole words: multiples of 32)
  const cases: [number, number, number, boolean][] = [[384, 256, 128, false], [1280, 512, 128, true], [768, 256, 64, true], [256, 512, 32, false], [224, 96, 32, false]];
  for (const bits of [3, 2] as const) {
    for (const [k, n, gs, ao] of cases) {
      const w = randomGptq(k, n, bits, gs, ao);
      const name = `q${bits} ${k}x${n} g${gs}${ao ? ' act-order' : ''}`;
      const order = fastGemvOrder(w);
      if (order === undefined) {
        for (const rows of [1, 5]) checkLinear(`${name} (generic)`, w, rows, HALF_TOL);
        continue;
      }
      const up = gpu().uploadLinear(w) as CudaGptq;
      assert.ok(up.layout === 'q4' && up.bits === 4 && up.storedBits === bits, `${name}: uploaded as ${up.layout} ${up.bits}-bit`);
      checkLinear(`${name} int8 x`, w, 1, INT8_TOL);
      checkLinear(`${name} int8 x, oracle on the same int8 x`, w, 1, INT8_EXACT_TOL, (x) => int8RoundTrip(x, order));
      checkLinear(name, w, 3, INT8_TOL); // gemv_q4_multi
      for (const rows of [9, 70, 512]) checkLinear(name, w, rows, HALF_TOL); // gemv_q4_rows, the GEMMs (512: wgmma on sm_90)
    }
  }
});

test('linear: dense fp16 (lm_head), with and without bias', { skip: skipNoGpu }, () => {
  for (const [k, n, bias] of [[512, 1000, false], [256, 130, true], [100, 64, false]] as const) {
    const w: LinearHost = { kind: 'dense', inFeatures: k, outFeatures: n, data: randHalf(k * n, 0.05), bias: bias ? randHalf(n) : undefined };
    for (const rows of [1, 9]) checkLinear(`dense ${k}x${n}${bias ? ' bias' : ''}`, w, rows, HALF_TOL);
  }
});

test('writeKv + attention: decode over a long context, prefill (flash and looped kernels), grouped KV heads', { skip: skipNoGpu }, () => {
  const before = gpu().prefillKernels;
  const wgBefore = gpu().flashWgLaunches, flashBefore = gpu().flashKernel;
  gpu().flashKernel = 'wgmma';
  // 'wgmma': head size 128 takes attn_flash_wg_128 on sm_90 (the others attn_flash); 'mma': attn_flash; 'old': the looped kernel
  for (const mode of ['wgmma', 'mma', 'old'] as const) for (const [heads, kvHeads, headDim] of [[8, 8, 128], [8, 2, 128], [8, 2, 64], [4, 4, 256]]) {
    gpu().prefillKernels = mode;
    const maxSeq = 1024, layers = 2, layer = 1;
    const [g, c] = both((b) => {
      const cache = b.allocKvCache(layers, maxSeq, kvHeads, headDim);
      const results: Float32Array[] = [];
      let pos = 0;
      // a prefill of 700 rows in chunks, then single-token steps, checking attention each time
      for (const rows of [300, 400, 1, 1, 5, 37, 2, 129]) {
        const k = input(b, rows, kvHeads * headDim, randnSeeded(rows * kvHeads * headDim, pos));
        const v = input(b, rows, kvHeads * headDim, randnSeeded(rows * kvHeads * headDim, pos + 7777));
        b.writeKv(cache, layer, pos, k, v, rows);
        const q = input(b, rows, heads * headDim, randnSeeded(rows * heads * headDim, pos + 99));
        const out = poisoned(b, rows, heads * headDim);
        b.attention(out, q, cache, { layer, startPos: pos, heads, kvHeads, headDim }, rows);
        results.push(b.readActivation(out));
        pos += rows;
      }
      return results;
    });
    g.forEach((r, i) => {
      const err = normErr(r, c[i]);
      assert.ok(err < HALF_TOL, `attention[${mode}] ${heads}/${kvHeads}x${headDim} step ${i}: err ${err}`);
    });
  }
  gpu().prefillKernels = before;
  gpu().flashKernel = flashBefore;
  // the wgmma kernel ran (2 head-128 shapes x 6 prompt calls of > 1 row) wherever the wgmma GEMM runs (sm_90)
  if (gpu().wgmmaFits) assert.equal(gpu().flashWgLaunches - wgBefore, 12);
});

test('attention over 1000-2100 cached positions: one row and three (split kernel), grouped KV heads, head sizes 64/128/256', { skip: skipNoGpu }, () => {
  // 'old' prefill kernels: three rows also go through attn_split (its row dimension, causal limit pos + t + 1)
  const before = gpu().prefillKernels;
  gpu().prefillKernels = 'old';
  for (const [heads, kvHeads, headDim] of [[8, 8, 128], [8, 2, 64], [32, 8, 128], [4, 4, 256]]) {
    const maxSeq = 2200, filled = 2100, width = kvHeads * headDim;
    const [g, c] = both((b) => {
      const cache = b.allocKvCache(2, maxSeq, kvHeads, headDim);
      b.writeKv(cache, 1, 0, input(b, filled, width, randnSeeded(filled * width, 1)), input(b, filled, width, randnSeeded(filled * width, 2)), filled);
      const results: Float32Array[] = [];
      for (const [startPos, rows] of [[999, 1], [1000, 3], [1536, 1], [2047, 1], [2096, 3], [2099, 1]]) {
        const q = input(b, rows, heads * headDim, randnSeeded(rows * heads * headDim, startPos + 3));
        const out = poisoned(b, rows, heads * headDim);
        b.attention(out, q, cache, { layer: 1, startPos, heads, kvHeads, headDim }, rows);
        results.push(b.readActivation(out));
      }
      return results;
    });
    g.forEach((r, i) => {
      const err = normErr(r, c[i]);
      assert.ok(err < HALF_TOL, `attention ${heads}/${kvHeads}x${headDim} case ${i}: err ${err}`);
    });
  }
  gpu().prefillKernels = before;
});

/** Deterministic per call site, so both backends see the same values. */
const seeded = new Map<number, Float32Array>();
function randnSeeded(n: number, key: number): Float32Array {
  const k = n * 100003 + key;
  let v = seeded.get(k);
  if (!v) { v = randn(n); seeded.set(k, v); }
  return v;
}

test('one-token GEMV batches: q/k/v + rope + KV write, gate/up + swiglu, linearAdd', { skip: skipNoGpu }, () => {
  const dim = 1024, heads = 8, headDim = 128, ffn = 2760, pos = 37, maxSeq = 64;
  // [act-order, producers write x permuted for act-order consumers]
  const runs = [[false, false], [true, false], [true, true], [false, true]] as const;
  const permXBefore = gpu().gemvPermuteX;
  for (const [ao, permX] of runs) {
    gpu().gemvPermuteX = permX;
    const [wq, wk, wv] = [0, 1, 2].map(() => randomGptq(dim, dim, 4, 128, ao));
    const [wg, wu] = [0, 1].map(() => randomGptq(dim, ffn, 4, 128, ao));
    const wd = randomGptq(2816, dim, 4, 128, ao); // down: its own input width, a multiple of 128
    const x = randn(dim), normW = randn(dim), past = randn(pos * dim), pastV = randn(pos * dim), resid = randn(dim), h2 = randn(2816);
    const [g, c] = both((b) => {
      const cache = b.allocKvCache(2, maxSeq, heads, headDim);
      b.writeKv(cache, 1, 0, input(b, pos, dim, past), input(b, pos, dim, pastV), pos);
      // the input comes from an rmsnorm, as in the model (act-order: it also writes the permuted copies)
      const [lq, lk, lv, lg, lu, ld] = [wq, wk, wv, wg, wu, wd].map((w) => b.uploadLinear(w));
      const xb = poisoned(b, 1, dim), xin = input(b, 1, dim, x), nw = b.uploadVector(normW);
      const [q, k, v] = [0, 1, 2].map(() => poisoned(b, 1, dim));
      b.rmsNorm(xb, xin, nw, 1e-6, 1);
      b.linear(q, xb, lq, 1);
      b.linear(k, xb, lk, 1);
      b.linear(v, xb, lv, 1);
      b.rope(q, heads, headDim, pos, 10000, 1);
      b.rope(k, heads, headDim, pos, 10000, 1);
      b.writeKv(cache, 1, pos, k, v, 1);
      const att = poisoned(b, 1, dim);
      b.attention(att, q, cache, { layer: 1, startPos: pos, heads, kvHeads: heads, headDim }, 1);
      const [gate, up, hidden] = [0, 1, 2].map(() => poisoned(b, 1, ffn));
      b.linear(gate, xb, lg, 1);
      b.linear(up, xb, lu, 1);
      b.swiglu(hidden, gate, up, 1);
      const acc = input(b, 1, dim, resid);
      const h = input(b, 1, 2816, h2);
      if (b.linearAdd) {
        b.linearAdd(acc, h, ld, 1);
      } else {
        const t = poisoned(b, 1, dim);
        b.linear(t, h, ld, 1);
        b.addInPlace(acc, t, 1);
      }
      // the next layer's norm of the residual: on CUDA the epilogue of the residual-add GEMV
      const xn = poisoned(b, 1, dim);
      b.rmsNorm(xn, acc, nw, 1e-6, 1);
      return [xb, q, k, v, att, gate, up, hidden, acc, xn].map((a) => b.readActivation(a));
    });
    const names = ['norm', 'q', 'k', 'v', 'attention', 'gate', 'up', 'hidden', 'residual', 'norm of the residual'];
    g.forEach((r, i) => {
      if (names[i] === 'attention') return; // below, on identical inputs
      const err = normErr(r, c[i]);
      assert.ok(err < (i === 0 ? HALF_TOL : INT8_TOL), `${names[i]}${ao ? ' act-order' : ''} ${permX ? ' (permuted x)' : ''}: err ${err}`);
    });
    // attention on identical inputs (softmax would amplify the int8 error of q and k): the CPU attends
    // with the GPU's roped q and its k, v, so the fused rope, fp16 KV write and attention are checked tightly
    const cc = cpu.allocKvCache(2, maxSeq, heads, headDim);
    cpu.writeKv(cc, 1, 0, input(cpu, pos, dim, past), input(cpu, pos, dim, pastV), pos);
    cpu.writeKv(cc, 1, pos, input(cpu, 1, dim, g[2]), input(cpu, 1, dim, g[3]), 1);
    const ca = poisoned(cpu, 1, dim);
    cpu.attention(ca, input(cpu, 1, dim, g[1]), cc, { layer: 1, startPos: pos, heads, kvHeads: heads, headDim }, 1);
    const errAtt = normErr(g[4], cpu.readActivation(ca));
    assert.ok(errAtt < HALF_TOL, `attention on the GPU's q, k, v${ao ? ' act-order' : ''} ${permX ? ' (permuted x)' : ''}: err ${errAtt}`);
  }
  gpu().gemvPermuteX = permXBefore;
});

test('a decode layer chained as the model runs it: every permuted-x hand-off, permuted x on and off, clusters on and off', { skip: skipNoGpu }, () => {
  // each stage checked against the CPU on the GPU's own input to it, so int8 errors do not compound
  const g = gpu();
  const headDim = 128, ffn = 2816, pos = 37, maxSeq = 64;
  const permXBefore = g.gemvPermuteX, clustersBefore = g.gemvClusters;
  // on compute capability 9.0 (where the wgmma GEMM runs) the cluster probe must find clusters schedulable
  if (g.wgmmaFits && process.env.QLLAMA_CUDA_CLUSTER !== '0') assert.ok(clustersBefore, `${g.deviceName}: one-token GEMVs launch as clusters`);
  // [act-order, q/k/v and gate/up share their permutation (GPTQ-for-LLaMa files), permuted x, width, clusters].
  // Width 1024 (8 slices) is one K range per tile; 2048 splits q/k/v into 4 ranges and gate/up into 4 ranges
  // of a tile pair: on sm_90 clusters of 4 and 8 blocks (gemv_q4_cl_*), else split-K through the workspace.
  const runs: [boolean, boolean, boolean, number, boolean][] = [
    [false, true, false, 1024, true], [false, true, true, 1024, true], [true, true, false, 1024, true], [true, true, true, 1024, true],
    [true, false, true, 1024, true], [false, true, false, 2048, true], [false, true, false, 2048, false], [true, true, true, 2048, true],
    [true, true, false, 2048, true], [true, true, true, 2048, false],
  ];
  for (const [ao, shared, permX, dim, clusters] of runs) {
    const heads = dim / headDim;
    const name = `${ao ? 'act-order' : 'compat'}${ao && !shared ? ' (own permutations)' : ''}${permX ? ', permuted x' : ''}, width ${dim}${clusters ? '' : ', no clusters'}`;
    g.gemvPermuteX = permX;
    g.gemvClusters = clusters;
    const wq = randomGptq(dim, dim, 4, 128, ao), wg = randomGptq(dim, ffn, 4, 128, ao);
    const like = (w: GptqLinearHost, first: GptqLinearHost): GptqLinearHost => (ao && shared ? { ...w, gIdx: first.gIdx } : w);
    const wk = like(randomGptq(dim, dim, 4, 128, ao), wq), wv = like(randomGptq(dim, dim, 4, 128, ao), wq);
    const wu = like(randomGptq(dim, ffn, 4, 128, ao), wg);
    const wo = randomGptq(dim, dim, 4, 128, ao), wd = randomGptq(ffn, dim, 4, 128, ao);
    const x = randn(dim), n1 = randn(dim), n2 = randn(dim), past = randn(pos * dim), pastV = randn(pos * dim);
    const resid0 = randn(dim), resid1 = randn(dim);
    // the GPU, in the model's order; every buffer written first (a write flushes the held launches)
    const cache = g.allocKvCache(2, maxSeq, heads, headDim);
    g.writeKv(cache, 1, 0, input(g, pos, dim, past), input(g, pos, dim, pastV), pos);
    const [lq, lk, lv, lo, lg, lu, ld] = [wq, wk, wv, wo, wg, wu, wd].map((w) => g.uploadLinear(w));
    const [nw1, nw2] = [n1, n2].map((vv) => g.uploadVector(vv));
    const xin = input(g, 1, dim, x), acc0 = input(g, 1, dim, resid0), acc1 = input(g, 1, dim, resid1);
    const [xb, q, k, v, att, xb2, xn, q2] = Array.from({ length: 8 }, () => poisoned(g, 1, dim));
    const [gate, up, hidden] = Array.from({ length: 3 }, () => poisoned(g, 1, ffn));
    g.rmsNorm(xb, xin, nw1, 1e-6, 1);
    g.linear(q, xb, lq, 1);
    g.linear(k, xb, lk, 1);
    g.linear(v, xb, lv, 1);
    g.rope(q, heads, headDim, pos, 10000, 1);
    g.rope(k, heads, headDim, pos, 10000, 1);
    g.writeKv(cache, 1, pos, k, v, 1);
    g.attention(att, q, cache, { layer: 1, startPos: pos, heads, kvHeads: heads, headDim }, 1);
    g.linearAdd(acc0, att, lo, 1);
    g.rmsNorm(xb2, acc0, nw2, 1e-6, 1);
    g.linear(gate, xb2, lg, 1);
    g.linear(up, xb2, lu, 1);
    g.swiglu(hidden, gate, up, 1);
    g.linearAdd(acc1, hidden, ld, 1);
    g.rmsNorm(xn, acc1, nw1, 1e-6, 1);
    g.linear(q2, xn, lq, 1);
    const out = Object.fromEntries(Object.entries({ xb, q, k, v, att, acc0, xb2, gate, up, hidden, acc1, xn, q2 }).map(([key, a]) => [key, g.readActivation(a)]));
    // the CPU, stage by stage on the GPU's inputs
    const c = cpu;
    const [cq, ck, cv, co, cg, cu, cd] = [wq, wk, wv, wo, wg, wu, wd].map((w) => c.uploadLinear(w));
    const [cn1, cn2] = [n1, n2].map((vv) => c.uploadVector(vv));
    const lin = (w: ReturnType<typeof c.uploadLinear>, xin: Float32Array, n: number, resid?: Float32Array): Float32Array => {
      const o = resid ? input(c, 1, n, resid) : poisoned(c, 1, n);
      if (resid) c.linearAdd(o, input(c, 1, xin.length, xin), w, 1);
      else c.linear(o, input(c, 1, xin.length, xin), w, 1);
      return c.readActivation(o);
    };
    const norm = (w: ReturnType<typeof c.uploadVector>, xin: Float32Array): Float32Array => {
      const o = poisoned(c, 1, xin.length);
      c.rmsNorm(o, input(c, 1, xin.length, xin), w, 1e-6, 1);
      return c.readActivation(o);
    };
    const roped = (xin: Float32Array): Float32Array => {
      const a = input(c, 1, dim, xin);
      c.rope(a, heads, headDim, pos, 10000, 1);
      return c.readActivation(a);
    };
    const cc = c.allocKvCache(2, maxSeq, heads, headDim);
    c.writeKv(cc, 1, 0, input(c, pos, dim, past), input(c, pos, dim, pastV), pos);
    c.writeKv(cc, 1, pos, input(c, 1, dim, out.k), input(c, 1, dim, out.v), 1);
    const ca = poisoned(c, 1, dim);
    c.attention(ca, input(c, 1, dim, out.q), cc, { layer: 1, startPos: pos, heads, kvHeads: heads, headDim }, 1);
    const ch = poisoned(c, 1, ffn);
    c.swiglu(ch, input(c, 1, ffn, out.gate), input(c, 1, ffn, out.up), 1);
    const want: [string, Float32Array, number][] = [
      ['xb', norm(cn1, x), HALF_TOL], ['q', roped(lin(cq, out.xb, dim)), INT8_TOL], ['k', roped(lin(ck, out.xb, dim)), INT8_TOL],
      ['v', lin(cv, out.xb, dim), INT8_TOL], ['att', c.readActivation(ca), HALF_TOL], ['acc0', lin(co, out.att, dim, resid0), INT8_TOL],
      ['xb2', norm(cn2, out.acc0), HALF_TOL], ['gate', lin(cg, out.xb2, ffn), INT8_TOL], ['up', lin(cu, out.xb2, ffn), INT8_TOL],
      ['hidden', c.readActivation(ch), HALF_TOL], ['acc1', lin(cd, out.hidden, dim, resid1), INT8_TOL], ['xn', norm(cn1, out.acc1), HALF_TOL],
      ['q2', lin(cq, out.xn, dim), INT8_TOL],
    ];
    for (const [key, ref, tol] of want) {
      const err = normErr(out[key], ref);
      assert.ok(err < tol, `${name}: ${key} err ${err}`);
    }
  }
  g.gemvPermuteX = permXBefore;
  g.gemvClusters = clustersBefore;
});
