/**
 * The Hopper prefill GEMM (per slice of N: dequant_q4_tile + gemm_wgmma_256, used for ≥ WGMMA_MIN_ROWS
 * rows on sm_90) against the CPU backend and against the mma.sync path, outputs poisoned first, compared
 * by normalized error; sliced against unsliced (bit-equal: the same tiles, the same sums); and a
 * ≥ 1024-token prompt of the embedded model giving the same logits on both paths.
 * The GPU tests skip, saying why, without a GPU or on a GPU other than sm_90; the slice planner's tests
 * need no GPU.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CpuBackend } from '../../src/backends/cpu/cpuBackend.js';
import type { Backend, KvCache, LinearHost } from '../../src/backends/backend.js';
import type { PrefillKernels } from '../../src/backends/cuda/cudaBackend.js';
import { WGMMA_MIN_ROWS } from '../../src/backends/cuda/linearLaunch.js';
import { WG_SLICE_BYTES, wgmmaSlicePlan, wgmmaStreamK, wgmmaTileCols, type WgTileCols } from '../../src/backends/cuda/wgmmaLinear.js';
import { LlamaModel } from '../../src/model/llama.js';
import { EMBEDDED_MODEL } from '../support/paths.js';
import { gpu, input, launchesOf, normErr, poisoned, randn, randomGptq, skipNoGpu } from './support.js';

const skip: false | string = skipNoGpu ||
  (gpu().wgmmaFits ? false : `${gpu().deviceName} is not a compute capability 9.0 GPU (or lacks cuTensorMapEncodeTiled): no wgmma GEMM to test`);
const cpu = new CpuBackend({ int8Gemv: false });
/** fp16 x and fp16-rounded weights against the CPU's f32 (as ops.test.ts's GEMM checks) */
const HALF_TOL = 4e-3;
/** the same fp16 products on both GPU paths: only the f32 summation order differs */
const PATH_TOL = 1e-4;

/**
 * y = x Wᵀ and acc + x Wᵀ (linearAdd) on the GPU in prefill mode `mode`; sliceBytes caps the wgmma
 * path's slices of fp16 weights (default: the backend's); rsMaxRows: up to how many rows the register-A
 * GEMM runs instead (default 0: never, so the dequant + wgmma path is what these tests check), from rsMinRows.
 */
function run(mode: PrefillKernels, w: LinearHost, rows: number, x: Float32Array, resid: Float32Array,
  sliceBytes?: number, streamK?: boolean, tileCols: WgTileCols = 256, rsMaxRows = 0, rsMinRows = WGMMA_MIN_ROWS): [Float32Array, Float32Array] {
  const g = gpu(), before = g.prefillKernels, beforeSlice = g.wgmmaSliceBytes, beforeStreamK = g.wgmmaStreamK, beforeCols = g.wgmmaTileCols;
  const beforeRs = g.rsMaxRows, beforeRsMin = g.rsMinRows;
  g.rsMaxRows = rsMaxRows;
  g.rsMinRows = rsMinRows;
  g.prefillKernels = mode;
  g.wgmmaSliceBytes = sliceBytes ?? beforeSlice;
  g.wgmmaStreamK = streamK ?? beforeStreamK;
  g.wgmmaTileCols = tileCols;
  try {
    const lw = g.uploadLinear(w);
    const out = poisoned(g, rows, w.outFeatures);
    g.linear(out, input(g, rows, w.inFeatures, x), lw, rows);
    const acc = input(g, rows, w.outFeatures, resid);
    g.linearAdd(acc, input(g, rows, w.inFeatures, x), lw, rows);
    return [g.readActivation(out), g.readActivation(acc)];
  } finally {
    g.prefillKernels = before;
    g.wgmmaSliceBytes = beforeSlice;
    g.wgmmaStreamK = beforeStreamK;
    g.wgmmaTileCols = beforeCols;
    g.rsMaxRows = beforeRs;
    g.rsMinRows = beforeRsMin;
  }
}

function runCpu(b: Backend, w: LinearHost, rows: number, x: Float32Array): Float32Array {
  const out = poisoned(b, rows, w.outFeatures);
  b.linear(out, input(b, rows, w.inFeatures, x), b.uploadLinear(w), rows);
  return b.readActivation(out);
}

test('wgmma GEMM against the CPU: partial tiles, gs 128 / 32, act-order, linearAdd', { skip }, () => {
  // [K, N, group size, act-order, rows]: N 640 and 264 leave a partial 256-wide tile, 1100 rows a partial 128-row one
  const cases: [number, number, number, boolean, number[]][] = [
    [1024, 640, 128, true, [WGMMA_MIN_ROWS, 1100]], [512, 264, 32, false, [1100]], [768, 1024, 128, false, [1024]],
  ];
  for (const [k, n, gs, ao, rowsList] of cases) {
    const w = randomGptq(k, n, 4, gs, ao);
    for (const rows of rowsList) {
      const x = randn(rows * k), resid = randn(rows * n);
      const [g, gAdd] = run('wgmma', w, rows, x, resid);
      const c = runCpu(cpu, w, rows, x);
      const name = `wgmma q4 ${k}x${n} g${gs}${ao ? ' act-order' : ''} rows=${rows}`;
      assert.ok(normErr(g, c) < HALF_TOL, `${name}: err ${normErr(g, c)}`);
      const want = Float32Array.from(c, (v, i) => v + resid[i]);
      assert.ok(normErr(gAdd, want) < HALF_TOL, `${name} linearAdd: err ${normErr(gAdd, want)}`);
    }
  }
});

test('register-A GEMM (gemm_rs_256) against the CPU and dequant + wgmma / mma.sync: partial tiles, gs 128 / 64 / 32, act-order, K split, linearAdd', { skip }, () => {
  // [K, N, group size, act-order, rows]: N 672 leaves a partial 128-column tile, 600 / 1000 rows a partial 256-token one
  const cases: [number, number, number, boolean, number[]][] = [
    [1024, 672, 128, true, [WGMMA_MIN_ROWS, 1000]], [512, 256, 32, false, [600]], [768, 1024, 64, true, [1024]], [5120, 5120, 128, false, [777]],
    // fewer rows than one token tile (the other path for them: gemm_q4_mma); 8 tiles over 80 K slices split K 5 ways
    [1024, 672, 128, true, [40, 200]], [5120, 1024, 128, true, [40, 300]],
  ];
  for (const [k, n, gs, ao, rowsList] of cases) {
    const w = randomGptq(k, n, 4, gs, ao);
    for (const rows of rowsList) {
      const x = randn(rows * k), resid = randn(rows * n);
      const [r, rAdd] = run('wgmma', w, rows, x, resid, undefined, undefined, 256, 4096, 2);
      const [d, dAdd] = run(rows >= WGMMA_MIN_ROWS ? 'wgmma' : 'mma', w, rows, x, resid);
      const name = `register-A q4 ${k}x${n} g${gs}${ao ? ' act-order' : ''} rows=${rows}`;
      assert.ok(normErr(r, d) < PATH_TOL, `${name}: vs dequant + wgmma / mma.sync, err ${normErr(r, d)}`);
      assert.ok(normErr(rAdd, dAdd) < PATH_TOL, `${name} linearAdd: vs dequant + wgmma / mma.sync, err ${normErr(rAdd, dAdd)}`);
      if (k * n * rows > 1024 * 1024 * 1024) continue; // the CPU reference of the 13B-wide case takes too long
      const c = runCpu(cpu, w, rows, x);
      assert.ok(normErr(r, c) < HALF_TOL, `${name}: vs CPU, err ${normErr(r, c)}`);
      const want = Float32Array.from(c, (v, i) => v + resid[i]);
      assert.ok(normErr(rAdd, want) < HALF_TOL, `${name} linearAdd: vs CPU, err ${normErr(rAdd, want)}`);
    }
  }
});

/** the largest |a − b| (Infinity where either is not finite) */
function maxDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Number.isFinite(a[i]) && Number.isFinite(b[i]) ? Math.abs(a[i] - b[i]) : Infinity);
  return m;
}

test('wgmma GEMM in slices of N against the CPU and (whole tiles only) bit-equal to one slice: partial slices and tiles, act-order, linearAdd', { skip }, () => {
  // [K, N, group size, act-order, rows, slice cap in 256-row tiles]: N 1000 leaves a last slice of 232 or
  // 488 columns (a partial 256-wide tile), 1100 and 600 rows a partial 128-row tile
  const cases: [number, number, number, boolean, number, number][] = [
    [1024, 1000, 128, true, 1100, 1], [1024, 1000, 128, false, 1024, 2], [512, 1280, 32, false, 1100, 2], [768, 776, 64, true, 600, 3],
  ];
  for (const [k, n, gs, ao, rows, tiles] of cases) {
    const cap = tiles * 256 * k * 2;
    const cols = wgmmaSlicePlan(rows, n, k, gpu().smCount, cap).cols;
    const name = `wgmma q4 ${k}x${n} g${gs}${ao ? ' act-order' : ''} rows=${rows} slices of ${cols}`;
    assert.ok(cols < n, `${name}: the case must run in more than one slice`);
    const w = randomGptq(k, n, 4, gs, ao);
    const x = randn(rows * k), resid = randn(rows * n);
    const [g, gAdd] = run('wgmma', w, rows, x, resid, cap, false);
    const [whole, wholeAdd] = run('wgmma', w, rows, x, resid, n * k * 2, false);
    const c = runCpu(cpu, w, rows, x);
    assert.ok(normErr(g, c) < HALF_TOL, `${name}: err ${normErr(g, c)}`);
    const want = Float32Array.from(c, (v, i) => v + resid[i]);
    assert.ok(normErr(gAdd, want) < HALF_TOL, `${name} linearAdd: err ${normErr(gAdd, want)}`);
    // slices start at multiples of 256 columns, so every output comes from the same tile and the same sums
    assert.equal(maxDiff(g, whole), 0, `${name}: sliced vs whole`);
    assert.equal(maxDiff(gAdd, wholeAdd), 0, `${name} linearAdd: sliced vs whole`);
  }
});

test('wgmma GEMM in 160-wide tiles (gemm_wgmma_160) against the CPU and 256-wide tiles: partial tiles and slices, stream-K, act-order, gs 32, linearAdd', { skip }, () => {
  // [K, N, group size, act-order, rows, slice cap in 160-row tiles (0: none), stream-K]: N 1000 leaves a partial
  // 160-wide tile (and slices of 320 / 480 a partial last slice), 1100 and 600 rows a partial 128-row tile;
  // 4 and 8 tiles split along K
  const cases: [number, number, number, boolean, number, number, boolean][] = [
    [1024, 1000, 128, true, 1100, 0, false], [1024, 1000, 128, false, 1024, 2, false], [512, 1280, 32, false, 1100, 3, false],
    [768, 776, 64, true, 600, 0, false], [5120, 320, 128, false, 512, 0, true], [2048, 640, 128, true, 512, 0, true],
  ];
  for (const [k, n, gs, ao, rows, tiles, streamK] of cases) {
    const cap = tiles > 0 ? tiles * 160 * k * 2 : undefined;
    const name = `wgmma 160 q4 ${k}x${n} g${gs}${ao ? ' act-order' : ''} rows=${rows}${tiles ? ` slices of ${tiles} tiles` : ''}${streamK ? ' stream-K' : ''}`;
    const w = randomGptq(k, n, 4, gs, ao);
    const x = randn(rows * k), resid = randn(rows * n);
    const [g, gAdd] = run('wgmma', w, rows, x, resid, cap, streamK, 160);
    const [wide, wideAdd] = run('wgmma', w, rows, x, resid, undefined, false, 256);
    const c = runCpu(cpu, w, rows, x);
    assert.ok(normErr(g, c) < HALF_TOL, `${name}: err ${normErr(g, c)}`);
    const want = Float32Array.from(c, (v, i) => v + resid[i]);
    assert.ok(normErr(gAdd, want) < HALF_TOL, `${name} linearAdd: err ${normErr(gAdd, want)}`);
    assert.ok(normErr(g, wide) < PATH_TOL, `${name}: vs 256-wide tiles ${normErr(g, wide)}`);
    assert.ok(normErr(gAdd, wideAdd) < PATH_TOL, `${name} linearAdd: vs 256-wide tiles ${normErr(gAdd, wideAdd)}`);
  }
});

test('wgmma tile width: the wave model picks 160-wide tiles where 256-wide ones leave a wave part-empty', () => {
  const sms = 132, cap = 80 * 1024 * 1024;
  // 13B q/k/v/o at 2048 rows: 320 tiles of 256 (2.4 waves) against 512 of 160 (3.9 waves)
  assert.equal(wgmmaTileCols(2048, 5120, 5120, sms, cap, 0).bn, 160);
  // a whole number of waves either way stays 256 (ties go to the wider tile)
  assert.equal(wgmmaTileCols(2048, 8448, 4096, sms, cap, 0).bn, 256);
  for (const forced of [160, 256] as const) {
    const { bn, cols } = wgmmaTileCols(2048, 5120, 13824, sms, cap, forced);
    assert.equal(bn, forced);
    assert.ok(cols === 5120 || cols % forced === 0, `slice of ${cols} columns`);
  }
});

test('wgmma stream-K: against the CPU and whole tiles, the same bits on every run; tiles split into 2 to 5 segments', { skip }, () => {
  // [K, N, rows] (launches of at most half the SMs' tiles split, wgmmaStreamK): 4 tiles of K 5120 (each
  // split into 5 runs of 16 K slices), 1100 rows × N 1000 (36 tiles, partial ones), down's K 13824 at 512
  // rows in a 2304-column slice as 13B runs it (36 tiles), 2048 rows × N 768 (48 tiles)
  const sms = gpu().smCount;
  const cases: [number, number, number][] = [[5120, 512, WGMMA_MIN_ROWS], [1024, 1000, 1100], [13824, 2304, WGMMA_MIN_ROWS], [5120, 768, 2048]];
  for (const [k, n, rows] of cases) {
    const tiles = Math.ceil(rows / 128) * Math.ceil(n / 256);
    const name = `stream-K q4 ${k}x${n} rows=${rows} (${tiles} tiles on ${sms} SMs)`;
    assert.ok(wgmmaStreamK(tiles, sms), `${name}: the case must split`);
    const w = randomGptq(k, n, 4, 128, false);
    const x = randn(rows * k), resid = randn(rows * n);
    const [g, gAdd] = run('wgmma', w, rows, x, resid, undefined, true);
    const [again, againAdd] = run('wgmma', w, rows, x, resid, undefined, true);
    const [whole, wholeAdd] = run('wgmma', w, rows, x, resid, undefined, false);
    assert.equal(maxDiff(g, again), 0, `${name}: two runs`);
    assert.equal(maxDiff(gAdd, againAdd), 0, `${name} linearAdd: two runs`);
    assert.ok(normErr(g, whole) < PATH_TOL, `${name}: vs whole tiles, err ${normErr(g, whole)}`);
    assert.ok(normErr(gAdd, wholeAdd) < PATH_TOL, `${name} linearAdd: vs whole tiles, err ${normErr(gAdd, wholeAdd)}`);
    if (k * n * rows <= 5120 * 5120 * 512) {
      const c = runCpu(cpu, w, rows, x);
      assert.ok(normErr(g, c) < HALF_TOL, `${name}: vs CPU, err ${normErr(g, c)}`);
    }
  }
});

test('gate/up + SwiGLU in one wgmma GEMM (dequant + wgmma above rsMaxRows, register-A up to it): bit-equal to gate, up and swiglu apart, and the copy down_proj reads; act-order, slices', { skip }, () => {
  const g = gpu();
  // [K, N, group size, act-order, rows, slice cap in 256-row tiles (0: the default)]
  const cases: [number, number, number, boolean, number, number][] = [
    [1024, 768, 128, true, 600, 0], [512, 1280, 32, false, 1100, 3], [5120, 13824, 128, false, 2048, 0],
    // ≤ rsMaxRows: the register-A GEMM's SwiGLU launch against its own gate and up launches
    [512, 1280, 32, true, 700, 0], [5120, 13824, 128, false, 640, 0],
  ];
  for (const [k, n, gs, ao, rows, tiles] of cases) {
    const name = `gate/up ${k}x${n} g${gs}${ao ? ' act-order' : ''} rows=${rows}${tiles ? ` slices of ${tiles} tiles` : ''}`;
    const gate = randomGptq(k, n, 4, gs, ao);
    const up = { ...randomGptq(k, n, 4, gs, ao), gIdx: gate.gIdx }; // one input, one act-order permutation (as GPTQ-for-LLaMa's files)
    const down = randomGptq(n, 256, 4, 128, false);
    const x = randn(rows * k);
    const beforeSlice = g.wgmmaSliceBytes, beforeFused = g.fusedGateUp, beforeStreamK = g.wgmmaStreamK, beforeFill = g.rsMinFill;
    const beforeSplit = g.rsSplitFill;
    if (tiles) g.wgmmaSliceBytes = tiles * 256 * k * 2;
    g.rsMinFill = 2; // above rsMaxRows: dequant + wgmma however well the register-A tiles would fill the SMs
    g.wgmmaStreamK = false; // small gate/up launches apart would split K (the fused GEMM never does): other sums
    g.rsSplitFill = 0; // nor split K to fill a part-empty wave (rsSplits)
    try {
      const G = g.uploadLinear(gate), U = g.uploadLinear(up), D = g.uploadLinear(down);
      const xa = input(g, rows, k, x);
      const outs = [true, false].map((fused) => {
        g.fusedGateUp = fused;
        const hidden = poisoned(g, rows, n), y = poisoned(g, rows, 256);
        if (fused) {
          assert.equal(g.gateUp(hidden, xa, G, U, rows), true, `${name}: fused`);
        } else {
          assert.equal(g.gateUp(hidden, xa, G, U, rows), false, `${name}: declined when off`);
          const ga = poisoned(g, rows, n), ua = poisoned(g, rows, n);
          g.linear(ga, xa, G, rows);
          g.linear(ua, xa, U, rows);
          g.swiglu(hidden, ga, ua, rows);
        }
        g.linear(y, hidden, D, rows);
        return [g.readActivation(hidden), g.readActivation(y)];
      });
      assert.equal(maxDiff(outs[0][0], outs[1][0]), 0, `${name}: SwiGLU output fused vs apart`);
      // down_proj reads the copy: equal up to the order of a split register-A launch's atomic adds (K 13824 at ≤ 768 rows)
      assert.ok(normErr(outs[0][1], outs[1][1]) < 1e-6, `${name}: down_proj of it fused vs apart, err ${normErr(outs[0][1], outs[1][1])}`);
      if (k * n * rows <= 1024 * 1280 * 1100) {
        const c = runCpu(cpu, gate, rows, x), cu = runCpu(cpu, up, rows, x);
        const want = Float32Array.from(c, (v, i) => (v / (1 + Math.exp(-v))) * cu[i]);
        assert.ok(normErr(outs[0][0], want) < HALF_TOL, `${name}: vs CPU, err ${normErr(outs[0][0], want)}`);
      }
    } finally {
      g.wgmmaSliceBytes = beforeSlice;
      g.fusedGateUp = beforeFused;
      g.wgmmaStreamK = beforeStreamK;
      g.rsMinFill = beforeFill;
      g.rsSplitFill = beforeSplit;
    }
  }
});

test('gate/up laid side by side (pairLinears): the SwiGLU launch through one 3-D map per array, bit-equal to two maps; gs 128 / 32, act-order, partial tiles', { skip }, () => {
  const g = gpu();
  // [K, N, group size, act-order, rows]: at or below rsMaxRows, so the register-A launch runs
  const cases: [number, number, number, boolean, number][] = [[1024, 768, 128, true, 600], [512, 1280, 32, false, 700], [5120, 13824, 128, false, 512]];
  for (const [k, n, gs, ao, rows] of cases) {
    const name = `paired gate/up ${k}x${n} g${gs}${ao ? ' act-order' : ''} rows=${rows}`;
    const gate = randomGptq(k, n, 4, gs, ao);
    const up = { ...randomGptq(k, n, 4, gs, ao), gIdx: gate.gIdx };
    const x = randn(rows * k);
    const G = g.uploadLinear(gate), U = g.uploadLinear(up);
    const xa = input(g, rows, k, x);
    const swiglu = (gw: typeof G, uw: typeof U): [Float32Array, string[]] => {
      const hidden = poisoned(g, rows, n);
      const launched = launchesOf(g, () => assert.equal(g.gateUp(hidden, xa, gw, uw, rows), true, `${name}: fused`));
      return [g.readActivation(hidden), launched];
    };
    const [apart, apartKernels] = swiglu(G, U);
    assert.ok(!apartKernels.some((kn) => kn.endsWith('_paired')), `${name}: separate uploads take two maps: ${apartKernels.join(' ')}`);
    const [PG, PU] = g.pairLinears(G, U);
    const [paired, pairedKernels] = swiglu(PG, PU);
    assert.ok(pairedKernels.some((kn) => kn.endsWith('_swiglu_paired')), `${name}: ${pairedKernels.join(' ')}`);
    assert.equal(maxDiff(paired, apart), 0, `${name}: paired vs two maps`);
    // the paired weights are whole linears: each alone gives what it gave before
    const y0 = poisoned(g, rows, n), y1 = poisoned(g, rows, n);
    g.linear(y0, xa, PU, rows);
    const want = runCpu(cpu, up, rows, x);
    if (k * n * rows <= 1024 * 1280 * 1100) assert.ok(normErr(g.readActivation(y0), want) < HALF_TOL, `${name}: up alone vs CPU`);
    g.linear(y1, xa, PG, rows);
    if (k * n * rows <= 1024 * 1280 * 1100) assert.ok(normErr(g.readActivation(y1), runCpu(cpu, gate, rows, x)) < HALF_TOL, `${name}: gate alone vs CPU`);
  }
});

test('q, k and v in one register-A launch (gemm_rs_256_qkv): bit-equal to three register-A launches, near the CPU; act-order, 13B shape', { skip }, () => {
  const g = gpu();
  // [K, N, group size, act-order, rows]: rows above rsMaxRows (the fill rule forced) and below it, each where one launch
  // fills the SMs' turns better than three (rsQkvFits)
  const cases: [number, number, number, boolean, number][] = [[1024, 768, 128, true, 1100], [512, 1280, 32, false, 900], [5120, 5120, 128, false, 500]];
  for (const [k, n, gs, ao, rows] of cases) {
    const name = `q/k/v ${k}x${n} g${gs}${ao ? ' act-order' : ''} rows=${rows}`;
    const q = randomGptq(k, n, 4, gs, ao);
    const kv = [1, 2].map(() => ({ ...randomGptq(k, n, 4, gs, ao), gIdx: q.gIdx })); // one input, one permutation
    const hosts = [q, ...kv];
    const x = randn(rows * k);
    const beforeFused = g.fusedQkv, beforeFill = g.rsMinFill, beforeSplit = g.rsSplitFill;
    g.rsMinFill = 0; // the register-A GEMM at every row count, so both runs take it
    g.rsSplitFill = 0; // the launches apart in whole tiles, as the one launch (a split K adds its ranges in any order)
    try {
      const ws = hosts.map((h) => g.uploadLinear(h));
      const xa = input(g, rows, k, x);
      const outs = [true, false].map((fused) => {
        g.fusedQkv = fused;
        const ys = ws.map(() => poisoned(g, rows, n));
        const took = g.linears(ys, xa, ws, rows);
        assert.equal(took, fused, `${name}: ${fused ? 'one launch' : 'declined when off'}`);
        if (!fused) ws.forEach((w, i) => g.linear(ys[i], xa, w, rows));
        return ys.map((y) => g.readActivation(y));
      });
      for (let i = 0; i < 3; i++) assert.equal(maxDiff(outs[0][i], outs[1][i]), 0, `${name}: output ${i} fused vs apart`);
      if (k * n * rows <= 1024 * 1280 * 1100) {
        for (let i = 0; i < 3; i++) {
          const c = runCpu(cpu, hosts[i], rows, x);
          assert.ok(normErr(outs[0][i], c) < HALF_TOL, `${name}: output ${i} vs CPU, err ${normErr(outs[0][i], c)}`);
        }
      }
    } finally {
      g.fusedQkv = beforeFused;
      g.rsMinFill = beforeFill;
      g.rsSplitFill = beforeSplit;
    }
  }
});

test('q/k/v with rope and the KV write in the epilogue (gemm_rs_256_qkv_rope): q and attention over its cache bit-equal to linears + ropeKv, near the CPU', { skip }, () => {
  const g = gpu();
  // [K, N (heads of 128), group size, act-order, rows, first position]: partial token tiles, the register-A GEMM forced
  const cases: [number, number, number, boolean, number, number][] = [[1024, 768, 128, true, 1100, 0], [512, 1280, 32, false, 900, 37], [5120, 5120, 128, false, 500, 3]];
  const beforeBits = g.qkvRopeBits;
  for (const [[k, n, gs, ao, rows, start], bits] of cases.flatMap((c) => ([64, 32] as const).map((b) => [c, b] as const))) {
    const name = `q/k/v rope f${bits} ${k}x${n} g${gs}${ao ? ' act-order' : ''} rows=${rows} at ${start}`;
    const heads = n / 128, shape = { heads, kvHeads: heads, headDim: 128, theta: 10000 };
    const q = randomGptq(k, n, 4, gs, ao);
    const hosts = [q, ...[1, 2].map(() => ({ ...randomGptq(k, n, 4, gs, ao), gIdx: q.gIdx }))];
    const x = randn(rows * k), past = randn(Math.max(start, 1) * n), pastV = randn(Math.max(start, 1) * n);
    // q and attention's output over the cache the q/k/v step wrote, by `run` on backend b
    const attend = (b: Backend, run: (ys: ReturnType<typeof input>[], xa: ReturnType<typeof input>, cache: KvCache) => void): [Float32Array, Float32Array] => {
      const cache = b.allocKvCache(1, start + rows + 8, heads, 128);
      if (start > 0) b.writeKv(cache, 0, 0, input(b, start, n, past), input(b, start, n, pastV), start);
      const xa = input(b, rows, k, x), ys = [0, 1, 2].map(() => poisoned(b, rows, n));
      run(ys, xa, cache);
      const out = poisoned(b, rows, n);
      b.attention(out, ys[0], cache, { layer: 0, startPos: start, heads, kvHeads: heads, headDim: 128 }, rows);
      return [b.readActivation(ys[0]), b.readActivation(out)];
    };
    const beforeFill = g.rsMinFill;
    g.rsMinFill = 0; // the register-A GEMM at every row count
    g.qkvRopeBits = bits;
    try {
      const ws = hosts.map((h) => g.uploadLinear(h));
      const fused: Float32Array[] = [];
      const launched = launchesOf(g, () => {
        fused.push(...attend(g, (ys, xa, cache) => assert.equal(g.qkvRopeKv(ys, xa, ws, cache, 0, start, shape, rows), true, `${name}: fused`)));
      });
      const [fq, fo] = fused;
      const kernel = bits === 64 ? 'gemm_rs_256_qkv_rope' : 'gemm_rs_256_qkv_rope32';
      assert.ok(launched.includes(kernel) && !launched.includes('rope_kv_f32'), `${name}: ${launched.join(' ')}`);
      const [sq, so] = attend(g, (ys, xa, cache) => {
        assert.equal(g.linears(ys, xa, ws, rows), true, `${name}: one q/k/v launch`);
        assert.equal(g.ropeKv(ys[0], ys[1], ys[2], cache, 0, start, shape, rows), true, `${name}: ropeKv`);
      });
      if (bits === 64) {
        assert.equal(fq.findIndex((v, i) => !Object.is(v, sq[i])), -1, `${name}: q differs from linears + ropeKv`);
        assert.equal(fo.findIndex((v, i) => !Object.is(v, so[i])), -1, `${name}: attention over the fused cache differs`);
      } else { // within f32 rounding of those
        assert.ok(normErr(fq, sq) < 1e-6, `${name}: q vs linears + ropeKv, err ${normErr(fq, sq)}`);
        assert.ok(normErr(fo, so) < 1e-3, `${name}: attention vs linears + ropeKv, err ${normErr(fo, so)}`);
      }
      if (k * n * rows <= 1024 * 1280 * 1100) {
        const cws = hosts.map((h) => cpu.uploadLinear(h));
        const [, co] = attend(cpu, (ys, xa, cache) => {
          cws.forEach((w, i) => cpu.linear(ys[i], xa, w, rows));
          cpu.rope(ys[0], heads, 128, start, shape.theta, rows);
          cpu.rope(ys[1], heads, 128, start, shape.theta, rows);
          cpu.writeKv(cache, 0, start, ys[1], ys[2], rows);
        });
        assert.ok(normErr(fo, co) < HALF_TOL, `${name}: attention vs CPU, err ${normErr(fo, co)}`);
      }
    } finally {
      g.rsMinFill = beforeFill;
      g.qkvRopeBits = beforeBits;
    }
  }
  const cache = g.allocKvCache(1, 8, 2, 128), ws = [0, 1, 2].map(() => g.uploadLinear(randomGptq(256, 256, 4, 128, false)));
  const one = (): ReturnType<typeof input> => input(g, 1, 256, randn(256));
  assert.equal(g.qkvRopeKv([one(), one(), one()], one(), ws, cache, 0, 0, { heads: 2, kvHeads: 2, headDim: 128, theta: 10000 }, 1), false, 'one row declines');
});

test('wgmma slice planner: 13B at 2048 rows on 132 SMs keeps the unsliced wave count within the cap', () => {
  const waves = (rows: number, n: number, cols: number, sms: number): number => {
    let t = 0;
    for (let n0 = 0; n0 < n; n0 += cols) t += Math.ceil((Math.ceil(rows / 128) * Math.ceil(Math.min(cols, n - n0) / 256)) / sms);
    return t;
  };
  // [N, K, expected columns per slice]: q/k/v/o whole (52 MB fits), gate/up 2 slices of 32 tiles, down 3 of 8
  const cases: [number, number, number][] = [[5120, 5120, 5120], [13824, 5120, 8192], [5120, 13824, 2048]];
  for (const [n, k, want] of cases) {
    const cols = wgmmaSlicePlan(2048, n, k, 132, WG_SLICE_BYTES).cols;
    assert.equal(cols, want, `${n}x${k}`);
    assert.ok(cols * k * 2 <= WG_SLICE_BYTES, `${n}x${k}: ${cols * k * 2} bytes`);
    assert.equal(waves(2048, n, cols, 132), waves(2048, n, n, 132), `${n}x${k}: waves sliced vs whole`);
  }
});

test('wgmma slice planner: whole tiles within the cap (one tile at least), never wider than N', () => {
  for (const rows of [512, 600, 1024, 1100, 2048, 4096])
    for (const [n, k] of [[8, 64], [264, 512], [1000, 1024], [5120, 5120], [13824, 5120], [5120, 13824], [32000, 5120], [27648, 8192]])
      for (const cap of [1, 256 * k * 2, 4 << 20, 32 << 20, WG_SLICE_BYTES, 1 << 40])
        for (const sms of [1, 78, 114, 132]) {
          const cols = wgmmaSlicePlan(rows, n, k, sms, cap).cols;
          const what = `rows ${rows} ${n}x${k} cap ${cap} sms ${sms}: ${cols}`;
          assert.ok(cols >= 1 && cols <= n, what);
          assert.ok(cols === n || cols % 256 === 0, what);
          assert.ok(cols * k * 2 <= Math.max(cap, 256 * k * 2), what);
          if (n * k * 2 <= cap && Math.ceil(rows / 128) * Math.ceil(n / 256) <= sms) assert.equal(cols, n, `${what}: one wave fits whole`);
        }
});

test('wgmma GEMM against the mma.sync GEMM at 13B-like sizes', { skip }, () => {
  const cases: [number, number, number, boolean, number][] = [[5120, 5120, 128, true, 1100], [5120, 1000, 128, false, 1024]];
  for (const [k, n, gs, ao, rows] of cases) {
    const w = randomGptq(k, n, 4, gs, ao);
    const x = randn(rows * k), resid = randn(rows * n);
    const [g, gAdd] = run('wgmma', w, rows, x, resid);
    const [m, mAdd] = run('mma', w, rows, x, resid);
    const name = `wgmma vs mma q4 ${k}x${n} g${gs}${ao ? ' act-order' : ''} rows=${rows}`;
    assert.ok(normErr(g, m) < PATH_TOL, `${name}: err ${normErr(g, m)}`);
    assert.ok(normErr(gAdd, mAdd) < PATH_TOL, `${name} linearAdd: err ${normErr(gAdd, mAdd)}`);
  }
});

test('tiny-vicuna: a 1100-token prompt gives the same logits with the wgmma and the mma.sync GEMM', { skip }, async () => {
  const rows = 1100;
  assert.ok(rows >= WGMMA_MIN_ROWS);
  const prompt = Array.from({ length: rows }, (_, i) => (i === 0 ? 1 : 3 + ((i * 7919) % 4000)));
  const model = await LlamaModel.create(EMBEDDED_MODEL, { backend: gpu(), contextLength: 1280 });
  const before = gpu().prefillKernels;
  try {
    gpu().prefillKernels = 'wgmma';
    const lw = await model.forward(prompt, 0);
    gpu().prefillKernels = 'mma';
    const lm = await model.forward(prompt, 0);
    assert.ok(normErr(lw, lm) < 1e-3, `prompt logits wgmma vs mma: err ${normErr(lw, lm)}`);
  } finally {
    gpu().prefillKernels = before;
  }
});
