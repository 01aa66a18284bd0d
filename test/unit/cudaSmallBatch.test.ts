/**
 * The host side of the batched-decode linear (smallBatchLinear.ts), no GPU: which weights and row
 * counts take gemv_q4_rows, and what launchSmallBatch queues (recorded by fakes) or refuses.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CuStream, DevicePtr, Dim3, Driver } from '../../src/backends/cuda/driver.js';
import type { CudaGptq, CudaLinear } from '../../src/backends/cuda/linearUpload.js';
import type { KernelModule } from '../../src/backends/cuda/module.js';
import { launchSmallBatch, launchSmallBatchGroup, multiKPerBlock, smallBatchFits } from '../../src/backends/cuda/smallBatchLinear.js';

interface Recorded { readonly op: string; readonly grid?: Dim3; readonly rows?: number; readonly args?: Buffer[] }

function fakes(): { cu: Driver; kernels: KernelModule; log: Recorded[] } {
  const log: Recorded[] = [];
  const cu = { memsetD32: () => { log.push({ op: 'memset' }); } } as unknown as Driver;
  // args[2] is i32(rows) of gemv_q4_rows<NT>; gemv_q4_multi takes one QMArgs, rows at byte 176
  const kernels = {
    launch: (name: string, grid: Dim3, _b: Dim3, args: Buffer[]) => {
      log.push({ op: name, grid, rows: name.startsWith('gemv_q4_multi') ? args[0].readInt32LE(176) : args[2].readInt32LE(0), args });
    },
  } as unknown as KernelModule;
  return { cu, kernels, log };
}

const q4 = (over: Partial<CudaGptq> = {}): CudaGptq => ({
  kind: 'gptq', bits: 4, storedBits: 4, groupSize: 128, layout: 'q4', rowsPerGroup: 16, inFeatures: 1024, outFeatures: 520,
  qweight: 0x1000n as DevicePtr, scales: 0x2000n as DevicePtr, qzeros: 0x3000n as DevicePtr, gIdx: null, perm: null, invPerm: null, bias: null,
  ...over,
} as CudaGptq);

const opts = { maxRows: 32, multiMaxRows: 0, smCount: 132, ws: 0x40000n as DevicePtr, counters: 0x50000n as DevicePtr, wsTiles: 2048 };
const call = (rows: number, accumulate = false) => ({ y: 0x10000n as DevicePtr, x: 0x20000n as DevicePtr, rows, accumulate });

test('smallBatchFits: K % 128, N % 8 and groupSize % 32 as well as layout, bits and rows', () => {
  assert.equal(smallBatchFits(q4(), 4, opts), true);
  assert.equal(smallBatchFits(q4({ inFeatures: 1024 + 64 }), 4, opts), false, 'K % 128');
  assert.equal(smallBatchFits(q4({ outFeatures: 524 }), 4, opts), false, 'N % 8');
  assert.equal(smallBatchFits(q4({ groupSize: 48 }), 4, opts), false, 'groupSize % 32');
  assert.equal(smallBatchFits(q4({ layout: 'generic' }), 4, opts), false);
  assert.equal(smallBatchFits(q4({ bits: 3 }), 4, opts), false);
  assert.equal(smallBatchFits(q4(), 33, opts), false);
  assert.equal(smallBatchFits({ kind: 'dense', inFeatures: 1024, outFeatures: 520 } as unknown as CudaLinear, 4, opts), false);
});

test('launchSmallBatch: zeroes y unless accumulating, then launches of up to 16 rows', () => {
  const { cu, kernels, log } = fakes();
  launchSmallBatch(cu, kernels, 0n as unknown as CuStream, q4(), call(20), opts);
  assert.deepEqual(log.map((e) => [e.op, e.rows]), [['memset', undefined], ['gemv_q4_rows2', 16], ['gemv_q4_rows1', 4]]);
  assert.equal(log[1].grid?.x, Math.ceil(520 / 128));
  log.length = 0;
  launchSmallBatch(cu, kernels, 0n as unknown as CuStream, q4(), call(3, true), opts);
  assert.deepEqual(log.map((e) => e.op), ['gemv_q4_rows1']);
});

test('launchSmallBatch refuses, launching nothing, a weight smallBatchFits would have refused', () => {
  for (const w of [q4({ inFeatures: 1000 }), q4({ outFeatures: 522 }), q4({ groupSize: 48 }), q4({ layout: 'generic' })]) {
    const { cu, kernels, log } = fakes();
    assert.equal(smallBatchFits(w, 4, opts), false);
    assert.throws(() => launchSmallBatch(cu, kernels, 0n as unknown as CuStream, w, call(4), opts), RangeError);
    assert.deepEqual(log, []);
  }
});

test('launchSmallBatch: up to multiMaxRows rows go to gemv_q4_multi<R> in launches of up to 4 rows, R = 2 or 4', () => {
  const { cu, kernels, log } = fakes();
  const multi = { ...opts, multiMaxRows: 8 };
  // a plain store goes through the kernel's split-K workspace: no memset of y
  launchSmallBatch(cu, kernels, 0n as unknown as CuStream, q4(), call(3), multi);
  assert.deepEqual(log.map((e) => [e.op, e.rows]), [['gemv_q4_multi4_rpg16', 3]]);
  log.length = 0;
  launchSmallBatch(cu, kernels, 0n as unknown as CuStream, q4({ groupSize: 32, rowsPerGroup: 4 }), call(5, true), multi);
  assert.deepEqual(log.map((e) => [e.op, e.rows]), [['gemv_q4_multi4_rpg4', 4], ['gemv_q4_multi2_rpg4', 1]]);
  log.length = 0;
  // above multiMaxRows: gemv_q4_rows
  launchSmallBatch(cu, kernels, 0n as unknown as CuStream, q4(), call(9, true), multi);
  assert.deepEqual(log.map((e) => e.op), ['gemv_q4_rows2']);
  log.length = 0;
  // more tiles than the workspace holds: gemv_q4_rows, y zeroed first
  launchSmallBatch(cu, kernels, 0n as unknown as CuStream, q4(), call(3), { ...multi, wsTiles: 4 });
  assert.deepEqual(log.map((e) => e.op), ['memset', 'gemv_q4_rows1']);
});

test('multiKPerBlock: about one wave, K split evenly in slices of 128, 4 to 16 slices per block; small K one range', () => {
  // 13B on 132 SMs: q (40 tiles) at 3 blocks per SM: 9 splits of 40 slices -> 5 slices; down (K 13824, 40 tiles): 108 slices -> 12 per block
  assert.equal(multiKPerBlock(5120, 40, 132, 4), 5 * 128);
  assert.equal(multiKPerBlock(13824, 40, 132, 4), 12 * 128);
  // 2 rows: 4 blocks per SM; gate/up-sized N (108 tiles): 4 splits of 40 slices -> 10
  assert.equal(multiKPerBlock(5120, 108, 132, 2), 10 * 128);
  // at least 4 slices per block (16 slices over 19 splits); one split of a huge K: at most 16 (the staged x)
  assert.equal(multiKPerBlock(2048, 20, 132, 4), 4 * 128);
  assert.equal(multiKPerBlock(22016, 396, 132, 4), 16 * 128);
  for (const K of [128, 768, 1024]) assert.equal(multiKPerBlock(K, 2, 132, 4), K);
  for (const [K, tiles] of [[5120, 40], [13824, 40], [22016, 64], [1152, 3]]) {
    for (const R of [2, 4] as const) {
      const per = multiKPerBlock(K, tiles, 132, R);
      assert.equal(per % 128, 0);
      assert.ok(per <= 2048 || (K <= 1024 && per === K), `K ${K}: ${per}`);
    }
  }
});

test('launchSmallBatchGroup: q/k/v or a gate/up pair with SwiGLU as one gemv_q4_multi launch (QMArgs), or nothing', () => {
  const { kernels, log } = fakes();
  const multi = { ...opts, multiMaxRows: 4 };
  const x = 0x20000n as DevicePtr, ys = [0x61000n, 0x62000n, 0x63000n] as DevicePtr[];
  const [q, k, v] = [q4({ inFeatures: 5120, outFeatures: 5120 }), q4({ inFeatures: 5120, outFeatures: 5120, perm: 0x7000n as DevicePtr }), q4({ inFeatures: 5120, outFeatures: 1024 })];
  assert.equal(launchSmallBatchGroup(kernels, [{ w: q, y: ys[0] }, { w: k, y: ys[1] }, { w: v, y: ys[2] }], x, 3, null, multi), true);
  assert.equal(log.length, 1);
  assert.equal(log[0].op, 'gemv_q4_multi4_rpg16');
  const a = log[0].args![0];
  assert.equal(a.length, 200);
  // the three matrices' tiles back to back: 40 + 40 + 8; each QMMat's qweight, perm, y, N, cumulative tiles
  assert.equal(log[0].grid?.x, 88);
  assert.deepEqual([0, 1, 2].map((i) => [a.readBigUInt64LE(i * 48), a.readBigUInt64LE(i * 48 + 24), a.readBigUInt64LE(i * 48 + 32), a.readInt32LE(i * 48 + 40), a.readInt32LE(i * 48 + 44)]),
    [[q.qweight, 0n, ys[0], 5120, 40], [k.qweight, 0x7000n, ys[1], 5120, 80], [v.qweight, 0n, ys[2], 1024, 88]]);
  assert.equal(a.readBigUInt64LE(144), x);
  assert.equal(a.readBigUInt64LE(168), 0n, 'no SwiGLU');
  assert.deepEqual([a.readInt32LE(176), a.readInt32LE(180), a.readInt32LE(184), a.readInt32LE(192)], [3, 5120, 128, 0]);
  assert.equal(log[0].grid?.y, Math.ceil(5120 / a.readInt32LE(188)));
  log.length = 0;
  // gate/up + SwiGLU: outputs not stored (y null), SwiGLU into its buffer
  const gate = q4({ inFeatures: 5120, outFeatures: 13824 }), up = q4({ inFeatures: 5120, outFeatures: 13824 });
  assert.equal(launchSmallBatchGroup(kernels, [{ w: gate, y: null }, { w: up, y: null }], x, 2, 0x90000n as DevicePtr, multi), true);
  const b = log[0].args![0];
  assert.equal(log[0].op, 'gemv_q4_multi2_rpg16');
  assert.equal(b.readBigUInt64LE(168), 0x90000n);
  assert.deepEqual([b.readBigUInt64LE(32), b.readBigUInt64LE(80), b.readInt32LE(44), b.readInt32LE(92)], [0n, 0n, 108, 216]);
  log.length = 0;
  // refused, nothing launched: 1 or 5 rows, more rows than multiMaxRows, different K or group size, a bias, a pair
  // of different widths, a missing output without SwiGLU, more tiles than the workspace
  const refused: [Parameters<typeof launchSmallBatchGroup>[1], number, DevicePtr | null, typeof multi][] = [
    [[{ w: q, y: ys[0] }], 1, null, multi], [[{ w: q, y: ys[0] }], 5, null, { ...multi, multiMaxRows: 8 }], [[{ w: q, y: ys[0] }], 3, null, { ...multi, multiMaxRows: 2 }],
    [[{ w: q, y: ys[0] }, { w: q4({ inFeatures: 4096, outFeatures: 5120 }), y: ys[1] }], 2, null, multi],
    [[{ w: q, y: ys[0] }, { w: q4({ inFeatures: 5120, outFeatures: 5120, groupSize: 64, rowsPerGroup: 8 }), y: ys[1] }], 2, null, multi],
    [[{ w: q4({ inFeatures: 5120, outFeatures: 5120, bias: 0x5000n as DevicePtr }), y: ys[0] }], 2, null, multi],
    [[{ w: gate, y: null }, { w: v, y: null }], 2, 0x90000n as DevicePtr, multi], [[{ w: q, y: null }], 2, null, multi],
    [[{ w: q, y: ys[0] }, { w: k, y: ys[1] }], 2, null, { ...multi, wsTiles: 64 }],
  ];
  for (const [mats, rows, swiglu, o] of refused) assert.equal(launchSmallBatchGroup(kernels, mats, x, rows, swiglu, o), false);
  assert.deepEqual(log, []);
});
