/**
 * The host side of the batched-decode linear (smallBatchLinear.ts), no GPU: which weights and row
 * counts take gemv_q4_rows, and what launchSmallBatch queues (recorded by fakes) or refuses.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CuStream, DevicePtr, Dim3, Driver } from '../../src/backends/cuda/driver.js';
import type { CudaGptq, CudaLinear } from '../../src/backends/cuda/linearUpload.js';
import type { KernelModule } from '../../src/backends/cuda/module.js';
import { launchSmallBatch, smallBatchFits } from '../../src/backends/cuda/smallBatchLinear.js';

interface Recorded { readonly op: string; readonly grid?: Dim3; readonly rows?: number }

function fakes(): { cu: Driver; kernels: KernelModule; log: Recorded[] } {
  const log: Recorded[] = [];
  const cu = { memsetD32: () => { log.push({ op: 'memset' }); } } as unknown as Driver;
  // args[2] is i32(rows) of gemv_q4_rows<NT>
  const kernels = { launch: (name: string, grid: Dim3, _b: Dim3, args: Buffer[]) => { log.push({ op: name, grid, rows: args[2].readInt32LE(0) }); } } as unknown as KernelModule;
  return { cu, kernels, log };
}

const q4 = (over: Partial<CudaGptq> = {}): CudaGptq => ({
  kind: 'gptq', bits: 4, groupSize: 128, layout: 'q4', rowsPerGroup: 16, inFeatures: 1024, outFeatures: 520,
  qweight: 0x1000n as DevicePtr, scales: 0x2000n as DevicePtr, qzeros: 0x3000n as DevicePtr, gIdx: null, perm: null, invPerm: null, bias: null,
  ...over,
} as CudaGptq);

const opts = { maxRows: 32, smCount: 132 };
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
  launchSmallBatch(cu, kernels, 0n as unknown as CuStream, q4(), call(20), opts.smCount);
  assert.deepEqual(log.map((e) => [e.op, e.rows]), [['memset', undefined], ['gemv_q4_rows2', 16], ['gemv_q4_rows1', 4]]);
  assert.equal(log[1].grid?.x, Math.ceil(520 / 128));
  log.length = 0;
  launchSmallBatch(cu, kernels, 0n as unknown as CuStream, q4(), call(3, true), opts.smCount);
  assert.deepEqual(log.map((e) => e.op), ['gemv_q4_rows1']);
});

test('launchSmallBatch refuses, launching nothing, a weight smallBatchFits would have refused', () => {
  for (const w of [q4({ inFeatures: 1000 }), q4({ outFeatures: 522 }), q4({ groupSize: 48 }), q4({ layout: 'generic' })]) {
    const { cu, kernels, log } = fakes();
    assert.equal(smallBatchFits(w, 4, opts), false);
    assert.throws(() => launchSmallBatch(cu, kernels, 0n as unknown as CuStream, w, call(4), opts.smCount), RangeError);
    assert.deepEqual(log, []);
  }
});
