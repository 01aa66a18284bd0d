/**
 * The fp16 copy of x that prompt-row GEMMs share (halfCopies.ts): GEMMs over one x convert it once, and
 * rmsnorm / SwiGLU of prompt rows write it themselves. These sequences check that a held copy is never
 * used stale: x rewritten between two GEMMs (by the host, by a linear's output, by a norm), a gathered
 * (act-order) copy followed by a GEMM that reads x linearly, and the producers' own copies; each against
 * the CPU backend running the same ops, outputs poisoned first.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CpuBackend } from '../../src/backends/cpu/cpuBackend.js';
import type { Backend } from '../../src/backends/backend.js';
import { WGMMA_MIN_ROWS } from '../../src/backends/cuda/linearLaunch.js';
import { gpu, input, launchesOf, normErr, poisoned, randn, randomGptq, skipNoGpu } from './support.js';

const cpu = new CpuBackend({ int8Gemv: false });
/** fp16 x and fp16-rounded weights against the CPU's f32 (as gemmWgmma.test.ts) */
const HALF_TOL = 4e-3;

/** runs `f` on the GPU and on the CPU; each returns the outputs to compare */
function both(f: (b: Backend) => Float32Array[]): [Float32Array[], Float32Array[]] {
  return [f(gpu()), f(cpu)];
}

function check(name: string, g: Float32Array[], c: Float32Array[]): void {
  g.forEach((v, i) => assert.ok(normErr(v, c[i]) < HALF_TOL, `${name} output ${i}: err ${normErr(v, c[i])}`));
}

/** the first index where two outputs differ in their bits, or −1 */
const firstBitDifference = (a: Float32Array, b: Float32Array): number => a.findIndex((v, i) => !Object.is(v, b[i]));

// both GEMM paths: mma.sync below WGMMA_MIN_ROWS (and off sm_90), wgmma from it on sm_90
for (const rows of [40, WGMMA_MIN_ROWS + 88]) {
  test(`one x, rewritten between GEMMs (host write, a linear's output, a norm): ${rows} rows`, { skip: skipNoGpu }, () => {
    const k = 512, x1 = randn(rows * k), x2 = randn(rows * k), x3 = randn(rows * k), nw = randn(k);
    const wa = randomGptq(k, 256, 4, 128, false), square = randomGptq(k, k, 4, 128, false);
    const [g, c] = both((b) => {
      const W = b.uploadLinear(wa), S = b.uploadLinear(square), norm = b.uploadVector(nw);
      const xa = input(b, rows, k, x1), other = input(b, rows, k, x3);
      const y1 = poisoned(b, rows, 256), y2 = poisoned(b, rows, 256), y3 = poisoned(b, rows, 256), y4 = poisoned(b, rows, 256);
      b.linear(y1, xa, W, rows);
      b.writeActivation(xa, x2); // the host rewrites x
      b.linear(y2, xa, W, rows);
      b.linear(xa, other, S, rows); // a linear writes x
      b.linear(y3, xa, W, rows);
      b.rmsNorm(xa, xa, norm, 1e-6, rows); // a norm rewrites x in place (and writes its fp16 copy)
      b.linear(y4, xa, W, rows);
      return [y1, y2, y3, y4].map((y) => b.readActivation(y));
    });
    check(`rows ${rows}`, g, c);
  });

  test(`a norm's copy feeds GEMMs that read x linearly and through an act-order gather, in both orders: ${rows} rows`, { skip: skipNoGpu }, () => {
    const k = 1024, x = randn(rows * k, 2), nw = randn(k);
    const ao = randomGptq(k, 256, 4, 128, true), plain = randomGptq(k, 512, 4, 128, false);
    const [g, c] = both((b) => {
      const A = b.uploadLinear(ao), P = b.uploadLinear(plain), norm = b.uploadVector(nw);
      const xa = input(b, rows, k, x), xb = poisoned(b, rows, k);
      const outs = [poisoned(b, rows, 256), poisoned(b, rows, 512), poisoned(b, rows, 512), poisoned(b, rows, 256)];
      b.rmsNorm(xb, xa, norm, 1e-6, rows);
      b.linear(outs[0], xb, A, rows);
      b.linear(outs[1], xb, P, rows);
      b.rmsNorm(xb, xa, norm, 1e-6, rows);
      b.linear(outs[2], xb, P, rows);
      b.linear(outs[3], xb, A, rows);
      return outs.map((y) => b.readActivation(y));
    });
    check(`rows ${rows}`, g, c);
  });

  test(`SwiGLU's copy feeds the down projection, then a residual linearAdd and a norm of the sum: ${rows} rows`, { skip: skipNoGpu }, () => {
    const k = 512, n = 768, gate = randn(rows * n, 2), up = randn(rows * n), resid = randn(rows * k), nw = randn(k);
    const down = randomGptq(n, k, 4, 128, false), proj = randomGptq(k, k, 4, 128, false);
    const [g, c] = both((b) => {
      const D = b.uploadLinear(down), P = b.uploadLinear(proj), norm = b.uploadVector(nw);
      const hidden = poisoned(b, rows, n), acc = input(b, rows, k, resid), xb = poisoned(b, rows, k), y = poisoned(b, rows, k);
      b.swiglu(hidden, input(b, rows, n, gate), input(b, rows, n, up), rows);
      if (b.linearAdd) b.linearAdd(acc, hidden, D, rows);
      else assert.fail(`${b.name} has no linearAdd`);
      b.rmsNorm(xb, acc, norm, 1e-6, rows);
      b.linear(y, xb, P, rows);
      return [b.readActivation(hidden), b.readActivation(acc), b.readActivation(y)];
    });
    check(`rows ${rows}`, g, c);
  });
}

test('prompt attention (attn_flash_wg_128) writes the fp16 copy o_proj\'s GEMM reads: no conversion launch, the same bits as converting', { skip: skipNoGpu }, () => {
  const g = gpu();
  if (!g.wgmmaFits) return; // (the wgmma attention runs on sm_90 only; elsewhere attention writes no copy)
  const rows = WGMMA_MIN_ROWS + 88, heads = 4, d = 128, width = heads * d;
  const wo = g.uploadLinear(randomGptq(width, 256, 4, 128, false));
  const cache = g.allocKvCache(1, rows, heads, d);
  g.writeKv(cache, 0, 0, input(g, rows, width, randn(rows * width)), input(g, rows, width, randn(rows * width)), rows);
  const q = input(g, rows, width, randn(rows * width)), out = poisoned(g, rows, width);
  const y1 = poisoned(g, rows, 256), y2 = poisoned(g, rows, 256);
  const first = launchesOf(g, () => {
    g.attention(out, q, cache, { layer: 0, startPos: 0, heads, kvHeads: heads, headDim: d }, rows);
    g.linear(y1, out, wo, rows);
  });
  assert.ok(first.includes('attn_flash_wg_128'), first.join(' '));
  assert.ok(!first.includes('x_to_half'), `the GEMM converted attention's output again: ${first.join(' ')}`);
  g.writeActivation(poisoned(g, 1, 4), new Float32Array(4)); // any host write: copies forgotten
  assert.ok(launchesOf(g, () => g.linear(y2, out, wo, rows)).includes('x_to_half'));
  const a = g.readActivation(y1), b = g.readActivation(y2);
  const differ = firstBitDifference(a, b);
  assert.equal(differ, -1, `output ${differ}: ${a[differ]} with the attention's copy vs ${b[differ]} converted`);
});

test('a norm whose declared readers share an act-order permutation writes their gathered fp16 copy: no conversion launch, the same bits as converting', { skip: skipNoGpu }, () => {
  const g = gpu();
  for (const rows of [40, WGMMA_MIN_ROWS + 88]) {
    const k = 1024, host = randomGptq(k, 256, 4, 128, true);
    const A = g.uploadLinear(host), B = g.uploadLinear({ ...randomGptq(k, 384, 4, 128, true), gIdx: host.gIdx }); // one input, one permutation
    const norm = g.uploadVector(randn(k));
    g.declareInputNorm(norm, [A, B]);
    const xa = input(g, rows, k, randn(rows * k, 2)), xb = poisoned(g, rows, k);
    const y1 = poisoned(g, rows, 256), y2 = poisoned(g, rows, 384), y3 = poisoned(g, rows, 256);
    const first = launchesOf(g, () => {
      g.rmsNorm(xb, xa, norm, 1e-6, rows);
      g.linear(y1, xb, A, rows);
      g.linear(y2, xb, B, rows);
    });
    assert.ok(first.some((n) => n.startsWith('rmsnorm_rows_f32')), first.join(' '));
    assert.ok(!first.some((n) => n.startsWith('x_to_half')), `rows ${rows}: a GEMM converted the norm's output again: ${first.join(' ')}`);
    g.writeActivation(poisoned(g, 1, 4), new Float32Array(4)); // any host write: copies forgotten
    const second = launchesOf(g, () => g.linear(y3, xb, A, rows));
    assert.ok(second.includes('x_to_half_gather_rows'), second.join(' '));
    const a = g.readActivation(y1), b = g.readActivation(y3);
    const differ = firstBitDifference(a, b);
    assert.equal(differ, -1, `rows ${rows}, output ${differ}: ${a[differ]} with the norm's gathered copy vs ${b[differ]} converted`);
  }
});

test('a norm read only by its declared readers (readers \'declared\'), all on fp16 copies, writes that copy alone: f32 rows unwritten, the readers\' bits unchanged; a reader of the f32 rows throws', { skip: skipNoGpu }, () => {
  const g = gpu();
  const before = new Set(g.halfOnly);
  try {
    for (const [rows, ao] of [[40, false], [WGMMA_MIN_ROWS + 88, true]] as const) {
      const k = 1024, host = randomGptq(k, 256, 4, 128, ao);
      const A = g.uploadLinear(host), B = g.uploadLinear({ ...randomGptq(k, 384, 4, 128, ao), gIdx: host.gIdx });
      const norm = g.uploadVector(randn(k));
      g.declareInputNorm(norm, [A, B]);
      const xa = input(g, rows, k, randn(rows * k, 2));
      const run = (halfOnly: boolean): Float32Array[] => {
        if (halfOnly) g.halfOnly.add('norm');
        else g.halfOnly.delete('norm');
        const xb = poisoned(g, rows, k), y1 = poisoned(g, rows, 256), y2 = poisoned(g, rows, 384);
        g.rmsNorm(xb, xa, norm, 1e-6, rows, 'declared');
        g.linear(y1, xb, A, rows);
        g.linear(y2, xb, B, rows);
        return [g.readActivation(xb), g.readActivation(y1), g.readActivation(y2)];
      };
      const [xbOnly, y1Only, y2Only] = run(true), [xbBoth, y1Both, y2Both] = run(false);
      const name = `rows ${rows}${ao ? ' act-order' : ''}`;
      assert.ok(xbOnly.every((v) => Number.isNaN(v)), `${name}: the f32 rows were written`);
      assert.ok(xbBoth.every((v) => !Number.isNaN(v)), `${name}: the f32 rows were not written with it off`);
      assert.equal(firstBitDifference(y1Only, y1Both), -1, `${name}: reader A's output`);
      assert.equal(firstBitDifference(y2Only, y2Both), -1, `${name}: reader B's output`);
      // a reader that would read the f32 rows after all (here the prompt GEMMs switched off between the two) throws
      g.halfOnly.add('norm');
      const xb = poisoned(g, rows, k), y = poisoned(g, rows, 256), kernels = g.prefillKernels;
      g.rmsNorm(xb, xa, norm, 1e-6, rows, 'declared');
      g.prefillKernels = 'old';
      try {
        assert.throws(() => g.linear(y, xb, A, rows), /f32 rows were not written/, name);
      } finally {
        g.prefillKernels = kernels;
      }
      // and a norm without the hint writes its f32 rows
      g.rmsNorm(xb, xa, norm, 1e-6, rows);
      assert.ok(g.readActivation(xb).every((v) => !Number.isNaN(v)), `${name}: no hint, no f32 rows`);
      g.linear(y, xb, A, rows);
      assert.equal(firstBitDifference(g.readActivation(y), y1Both), -1, `${name}: after a plain norm`);
    }
  } finally {
    g.halfOnly = before;
  }
});

test('prompt RMSNorm: rmsnorm_rows_f32_narrow (rows up to 5120) gives rmsnorm_rows_f32\'s f32 bits and the GEMM the same input, with and without a gather', { skip: skipNoGpu }, () => {
  const g = gpu(), before = g.rmsNormNarrow;
  try {
    for (const [k, ao] of [[5120, false], [4096, true], [1000, false]] as const) {
      const host = randomGptq(k, 256, 4, 128, ao), A = g.uploadLinear(host);
      const norm = g.uploadVector(randn(k));
      g.declareInputNorm(norm, [A]);
      const rows = WGMMA_MIN_ROWS + 40, xa = input(g, rows, k, randn(rows * k, 3));
      const run = (narrow: boolean): { x: Float32Array; y: Float32Array; kernels: string[] } => {
        g.rmsNormNarrow = narrow;
        const xb = poisoned(g, rows, k), y = poisoned(g, rows, 256);
        const kernels = launchesOf(g, () => {
          g.rmsNorm(xb, xa, norm, 1e-6, rows);
          g.linear(y, xb, A, rows); // reads the norm's fp16 copy (gathered where act-order)
        });
        return { x: g.readActivation(xb), y: g.readActivation(y), kernels };
      };
      const narrow = run(true), wide = run(false);
      assert.ok(narrow.kernels.includes('rmsnorm_rows_f32_narrow'), `${k}: ${narrow.kernels.join(' ')}`);
      assert.ok(wide.kernels.includes('rmsnorm_rows_f32'), `${k}: ${wide.kernels.join(' ')}`);
      const d = firstBitDifference(narrow.x, wide.x);
      assert.equal(d, -1, `${k}${ao ? ' act-order' : ''}, f32 rows differ at ${d}: ${narrow.x[d]} vs ${wide.x[d]}`);
      // the same fp16 copy: equal up to the order of a split launch's atomic adds
      assert.ok(normErr(narrow.y, wide.y) < 1e-6, `${k}${ao ? ' act-order' : ''}, the GEMM from the copy: err ${normErr(narrow.y, wide.y)}`);
    }
  } finally {
    g.rmsNormNarrow = before;
  }
});
