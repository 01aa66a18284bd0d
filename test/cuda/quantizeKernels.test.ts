/**
 * The CUDA quantizer's kernels against the CPU quantizer's own functions on fresh random inputs:
 * the fp16 tensor-core GEMM, the Hessian sums, the factor of the damped inverse Hessian, the GPTQ
 * solve (2/3/4/8 bits, groups, act-order, static groups, one group) and one decoder layer's
 * forward. Inputs are fp16-exact, so both sides read the same numbers. Skipped without a GPU.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { DevicePtr } from '../../src/backends/cuda/driver.js';
import { halfArrayToFloat } from '../../src/backends/cpu/kernels/half.js';
import type { GptqBits } from '../../src/formats/gptqTypes.js';
import { DeviceHessian } from '../../src/quantize/cuda/deviceHessian.js';
import { DeviceLayer } from '../../src/quantize/cuda/deviceLayer.js';
import { factorHessian, freeFactor } from '../../src/quantize/cuda/factor.js';
import { gptqLinearGpu } from '../../src/quantize/cuda/gptqSolve.js';
import { gemmF16 } from '../../src/quantize/cuda/ops.js';
import { descendingDiagonalOrder, gptqQuantize } from '../../src/quantize/gptq.js';
import { HessianAccumulator, reconstructionError } from '../../src/quantize/hessian.js';
import { linearRows } from '../../src/quantize/kernels.js';
import { LINEAR_NAMES, LayerRunner, linearShape, type LayerDims, type LayerParams, type LinearName } from '../../src/quantize/layerRunner.js';
import { upperCholeskyOfInverse } from '../../src/quantize/linalg.js';
import { dequantize, type QuantizeSettings } from '../../src/quantize/types.js';
import { encodeHalf } from '../../src/quantize/half16.js';
import { normErr, randn, skipNoGpu } from './support.js';
import { agreement, quantGpu, randHalfExact } from './quantizeSupport.js';

const HALF_NAN = 0x7e00;

function upload(data: ArrayBufferView): DevicePtr {
  return quantGpu().uploadNew(data, 'test input');
}
function poisonedF32(n: number): DevicePtr {
  return upload(new Float32Array(n).fill(NaN));
}
function readF32(p: DevicePtr, n: number): Float32Array {
  return quantGpu().download(new Float32Array(n), p);
}

/** x rounded to fp16: as f32 and as fp16 bits. */
function halfOf(x: Float32Array): { f32: Float32Array; f16: Uint16Array } {
  const f16 = new Uint16Array(x.length);
  encodeHalf(x, f16);
  return { f32: halfArrayToFloat(f16), f16 };
}

/** Inputs with per-column scales spread over 100× (act-order has a clear order) and one dead column. */
function calibrationInputs(samples: number, rows: number, cols: number, dead = -1): { f32: Float32Array; f16: Uint16Array }[] {
  const colScale = Float32Array.from({ length: cols }, () => 0.1 + 10 * Math.random() ** 2);
  return Array.from({ length: samples }, () => {
    const z = randn(rows * cols);
    for (let t = 0; t < rows; t++) for (let c = 0; c < cols; c++) z[t * cols + c] = c === dead ? 0 : z[t * cols + c] * colScale[c];
    return halfOf(z);
  });
}

/** The CPU Hessian of the samples, and the GPU's (device pointer, [cols, cols] f32). */
function bothHessians(xs: { f32: Float32Array; f16: Uint16Array }[], rows: number, cols: number): { cpu: Float64Array; gpu: DeviceHessian } {
  const acc = new HessianAccumulator(cols);
  for (const x of xs) acc.add(x.f32, rows);
  const dh = new DeviceHessian(quantGpu(), cols, rows);
  for (const x of xs) {
    const p = upload(x.f16);
    dh.add(p, rows);
    quantGpu().sync();
    quantGpu().free(p);
  }
  return { cpu: acc.hessian(), gpu: dh };
}

test('fp16 tensor-core GEMM against linearRows (ragged M, N and K)', { skip: skipNoGpu }, () => {
  for (const [m, n, k] of [[150, 264, 72], [2048, 384, 512], [7, 8, 8]]) {
    const x = randHalfExact(m * k), w = randHalfExact(n * k, 0.1);
    const want = new Float32Array(m * n);
    linearRows(want, x.f32, w.f32, m, k, n);
    const c = poisonedF32(m * n);
    gemmF16(quantGpu(), c, n, upload(x.f16), k, upload(w.f16), k, m, n, k, false);
    const got = readF32(c, m * n);
    assert.ok(normErr(got, want) < 1e-5, `gemm ${m}×${n}×${k}: err ${normErr(got, want)}`);
    // accumulate: C += A·Bᵀ again
    gemmF16(quantGpu(), c, n, upload(x.f16), k, upload(w.f16), k, m, n, k, true);
    const twice = readF32(c, m * n);
    assert.ok(normErr(twice, want.map((v) => 2 * v)) < 1e-5, `gemm accumulate ${m}×${n}×${k}`);
  }
});

test('Hessian 2/n·ΣXᵀX against HessianAccumulator', { skip: skipNoGpu }, () => {
  for (const [rows, cols] of [[300, 256], [64, 200]]) {
    const { cpu, gpu } = bothHessians(calibrationInputs(3, rows, cols, 5), rows, cols);
    const got = gpu.download();
    const err = normErr(Float32Array.from(got), Float32Array.from(cpu));
    assert.ok(err < 1e-5, `hessian ${rows}×${cols}: err ${err}`);
  }
});

test('factor of the damped inverse Hessian against upperCholeskyOfInverse (with and without act-order)', { skip: skipNoGpu }, () => {
  const g = quantGpu();
  for (const n of [200, 256, 520]) {
    const { cpu: h } = bothHessians(calibrationInputs(2, 2 * n, n, 3), 2 * n, n);
    for (const actOrder of [false, true]) {
      const hDev = upload(Float32Array.from(h));
      const f = factorHessian(g, hDev, n, { actOrder, damp: 0.01 });
      // the CPU path's steps (gptq.ts): dead → 1, order, permute, damp, factor
      const diag = Float64Array.from({ length: n }, (_, i) => (h[i * n + i] === 0 ? 1 : h[i * n + i]));
      const hd = h.slice();
      for (let i = 0; i < n; i++) hd[i * n + i] = diag[i];
      const perm = actOrder ? descendingDiagonalOrder(hd, n) : Int32Array.from({ length: n }, (_, i) => i);
      assert.deepEqual(Array.from(f.perm), Array.from(perm), 'visiting order');
      assert.equal(f.dead[3], 1, 'dead column found');
      const damp = 0.01 * (diag.reduce((s, v) => s + v, 0) / n);
      const hp = new Float64Array(n * n);
      for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) hp[a * n + b] = a === b ? diag[perm[a]] + damp : h[perm[a] * n + perm[b]];
      const want = Float32Array.from(upperCholeskyOfInverse(hp, n));
      const got = readF32(f.u, n * n);
      const err = normErr(got, want);
      assert.ok(err < 1e-3, `U n=${n} actOrder=${actOrder}: err ${err}`);
      for (let i = 1; i < n; i++) for (let j = 0; j < i; j++) assert.equal(got[i * n + j], 0, `U[${i},${j}] below the diagonal`);
      freeFactor(g, f);
      g.free(hDev);
    }
  }
});

test('GPTQ solve against gptqQuantize: 2/3/4/8 bits, groups, act-order, static groups, one group', { skip: skipNoGpu }, () => {
  const g = quantGpu();
  const rows = 96, cols = 256;
  const { cpu: h } = bothHessians(calibrationInputs(4, 512, cols, 7), 512, cols);
  const cases: QuantizeSettings[] = [];
  for (const bits of [2, 3, 4, 8] as GptqBits[]) {
    for (const actOrder of [false, true]) cases.push({ bits, groupSize: 64, actOrder, staticGroups: false, sym: false, damp: 0.01 });
  }
  cases.push({ bits: 4, groupSize: 64, actOrder: true, staticGroups: true, sym: false, damp: 0.01 });
  cases.push({ bits: 4, groupSize: -1, actOrder: true, staticGroups: false, sym: false, damp: 0.01 });
  cases.push({ bits: 3, groupSize: 32, actOrder: false, staticGroups: false, sym: true, damp: 0.01 });
  cases.push({ bits: 4, groupSize: 256, actOrder: true, staticGroups: false, sym: false, damp: 0.01, blockSize: 128 });
  for (const s of cases) {
    const label = `${s.bits}-bit g${s.groupSize}${s.actOrder ? ' act-order' : ''}${s.staticGroups ? ' static' : ''}${s.sym ? ' sym' : ''}`;
    const w = randHalfExact(rows * cols, 0.05);
    const want = gptqQuantize(w.f32, h, rows, cols, s);
    const hDev = upload(Float32Array.from(h));
    const wDev = upload(w.f16);
    const deq = upload(new Uint16Array(rows * cols).fill(HALF_NAN));
    const f = factorHessian(g, hDev, cols, s);
    const got = gptqLinearGpu(g, wDev, rows, cols, f, s, deq);
    freeFactor(g, f);
    assert.deepEqual(Array.from(got.gIdx), Array.from(want.gIdx), `${label}: g_idx`);
    const same = agreement(got.q, want.q), near = agreement(got.q, want.q, 1);
    assert.ok(same > (s.bits === 8 ? 0.8 : 0.95) && near > 0.99, `${label}: levels equal ${same}, within 1 ${near}`);
    assert.ok(agreement(got.zeros, want.zeros, 1) > 0.97, `${label}: zero points`);
    assert.ok(normErr(got.scales, want.scales) < 2e-2, `${label}: scales err ${normErr(got.scales, want.scales)}`);
    // GPTQ's own objective on this Hessian: the GPU's weights are as good as the CPU's
    const eGpu = reconstructionError(w.f32, dequantize(got), h, rows, cols, 4);
    const eCpu = reconstructionError(w.f32, dequantize(want), h, rows, cols, 4);
    assert.ok(eGpu < eCpu * 1.03, `${label}: ‖ΔWX‖² gpu ${eGpu} vs cpu ${eCpu}`);
    assert.ok(Math.abs(got.loss - want.loss) <= 0.03 * want.loss, `${label}: loss ${got.loss} vs ${want.loss}`);
    // the dequantized fp16 weights the forward pass uses: every one written, equal to the result's
    const deqGot = halfArrayToFloat(g.download(new Uint16Array(rows * cols), deq));
    const deqWant = halfOf(dequantize(got)).f32;
    assert.ok(normErr(deqGot, deqWant) < 1e-6, `${label}: dequantized weights`);
    for (const p of [hDev, wDev, deq]) g.free(p);
  }
});

function randomLayer(dims: LayerDims): { cpu: LayerParams; half: Record<LinearName, Uint16Array> } {
  const linear = {} as Record<LinearName, Float32Array>;
  const half = {} as Record<LinearName, Uint16Array>;
  for (const name of LINEAR_NAMES) {
    const s = linearShape(dims, name);
    const r = randHalfExact(s.out * s.in, 1 / Math.sqrt(s.in));
    linear[name] = r.f32;
    half[name] = r.f16;
  }
  const norm = (): Float32Array => Float32Array.from(randn(dims.dim, 0.2), (v) => 1 + v);
  return { cpu: { attnNorm: norm(), mlpNorm: norm(), linear }, half };
}

test('one decoder layer forward against LayerRunner (head sizes 64 and 128, grouped kv heads)', { skip: skipNoGpu }, () => {
  const g = quantGpu();
  const shapes: LayerDims[] = [
    { dim: 256, kvDim: 256, ffn: 768, heads: 4, kvHeads: 4, headDim: 64, eps: 1e-6, ropeTheta: 10000 },
    { dim: 512, kvDim: 256, ffn: 1024, heads: 4, kvHeads: 2, headDim: 128, eps: 1e-5, ropeTheta: 10000 },
  ];
  for (const dims of shapes) {
    for (const rows of [150, 256]) {
      const p = randomLayer(dims);
      const x = randn(rows * dims.dim);
      const runner = new LayerRunner(dims, rows);
      const L = new DeviceLayer(g, dims, rows);
      L.upload({ attnNorm: p.cpu.attnNorm, mlpNorm: p.cpu.mlpNorm, linear: p.half });
      // the attention output (the input of o)
      const xDev = upload(x);
      const a = runner.attention(p.cpu, runner.attnInput(p.cpu, x.slice(), rows), rows).slice();
      const a16 = upload(new Uint16Array(rows * dims.dim).fill(HALF_NAN));
      L.attention(L.attnInput(xDev), a16);
      const aGot = halfArrayToFloat(g.download(new Uint16Array(rows * dims.dim), a16));
      assert.ok(normErr(aGot, a) < 5e-3, `attention d${dims.headDim} rows ${rows}: err ${normErr(aGot, a)}`);
      // the whole layer, in place
      const want = x.slice();
      runner.forward(p.cpu, want, rows);
      L.forward(xDev);
      const got = readF32(xDev, rows * dims.dim);
      assert.ok(normErr(got, want) < 5e-3, `layer d${dims.headDim} rows ${rows}: err ${normErr(got, want)}`);
      g.free(xDev);
      g.free(a16);
    }
  }
});
