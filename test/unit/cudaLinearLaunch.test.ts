/**
 * The host side of launchLinear (linearLaunch.ts), no GPU: which kernel each row count takes (recorded by fakes),
 * with and without the Hopper GEMM, for 8-bit weights in the q8 layout and for the 4-bit prompt GEMMs.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CuStream, DevicePtr, Dim3, Driver } from '../../src/backends/cuda/driver.js';
import { GemvBatch } from '../../src/backends/cuda/gemvBatch.js';
import { launchLinear, type GemmOptions } from '../../src/backends/cuda/linearLaunch.js';
import type { CudaGptq } from '../../src/backends/cuda/linearUpload.js';
import { RS_MAX_ROWS, RS_MIN_FILL, RS_SMALL_ROWS, RS_SPLIT_MIN_FILL, rsBuildFor, rsPlainTiles, rsQkvFits, rsQkvRopeHeadTiles, rsQkvRopeOverlaps, rsSplits, rsTakes, rsWaveFill } from '../../src/backends/cuda/rsLinear.js';
import type { KernelModule } from '../../src/backends/cuda/module.js';

interface Recorded { readonly op: string; readonly grid?: Dim3; readonly rows?: number }

const K = 5120, N = 1024;
const q8: CudaGptq = {
  kind: 'gptq', bits: 8, storedBits: 8, groupSize: 128, layout: 'q8', rowsPerGroup: 16, inFeatures: K, outFeatures: N,
  qweight: 0x1000n as DevicePtr, scales: 0x2000n as DevicePtr, qzeros: 0x3000n as DevicePtr, gIdx: null, perm: null, invPerm: null, bias: null,
};

function fakes(): { cu: Driver; kernels: KernelModule; batch: GemvBatch; log: Recorded[] } {
  const log: Recorded[] = [];
  const cu = {
    memsetD32: () => { log.push({ op: 'memset' }); },
    encodeTensorMap2d: () => Buffer.alloc(128),
  } as unknown as Driver;
  // gemv_q8_r4's args[2] is i32(rows)
  const kernels = {
    launch: (name: string, grid: Dim3, _b: Dim3, args: Buffer[]) => {
      log.push({ op: name, grid, rows: name === 'gemv_q8_r4' ? args[2].readInt32LE(0) : undefined });
    },
  } as unknown as KernelModule;
  const batch = new GemvBatch(kernels, 0x40000n as DevicePtr, 0x50000n as DevicePtr, 132, []);
  return { cu, kernels, batch, log };
}

const call = (rows: number, accumulate = false) => ({ y: 0x10000n as DevicePtr, x: 0x20000n as DevicePtr, rows, accumulate });
const gemm = (wgmma: boolean, rsMaxRows = 1024, rsMinRows = 512): GemmOptions => ({
  mma: true,
  half: () => 0x60000n as DevicePtr,
  wgmma: wgmma ? {
    weightScratch: () => 0x70000n as DevicePtr, smCount: 132, sliceBytes: () => 80 << 20, tileFlags: () => null, tileCols: () => 0,
    takesRs: (rows) => rows >= rsMinRows && rows <= rsMaxRows, rsSplitFill: () => RS_SPLIT_MIN_FILL, rsPaired: () => false, rsPdl: () => false,
    rsBuild: (rows) => rsBuildFor(rows, RS_SMALL_ROWS),
  } : null,
  smallBatch: null,
});

test('q8 layout, one row: y zeroed, then gemv_q8 over 128-column tiles and K ranges', () => {
  const { cu, kernels, batch, log } = fakes();
  launchLinear(cu, kernels, 0n as unknown as CuStream, batch, q8, call(1), gemm(true));
  assert.deepEqual(log.map((e) => e.op), ['memset', 'gemv_q8']);
  assert.equal(log[1].grid?.x, N / 128);
  assert.ok((log[1].grid?.y ?? 0) > 1, 'K split across blocks');
  log.length = 0;
  launchLinear(cu, kernels, 0n as unknown as CuStream, batch, q8, call(1, true), gemm(true));
  assert.deepEqual(log.map((e) => e.op), ['gemv_q8'], 'an accumulating call adds onto y');
});

test('q8 layout, 2..32 rows: gemv_q8_r4 in launches of up to 4 rows, with or without the small-batch kernels', () => {
  const { cu, kernels, batch, log } = fakes();
  launchLinear(cu, kernels, 0n as unknown as CuStream, batch, q8, call(9), gemm(true));
  assert.deepEqual(log.map((e) => [e.op, e.rows]), [['memset', undefined], ['gemv_q8_r4', 4], ['gemv_q8_r4', 4], ['gemv_q8_r4', 1]]);
  log.length = 0;
  launchLinear(cu, kernels, 0n as unknown as CuStream, batch, q8, call(32, true), gemm(false));
  assert.equal(log.filter((e) => e.op === 'gemv_q8_r4').length, 8);
});

test('q8 layout, more than 32 rows: dequant_q8_tile + the wgmma GEMM on sm_90, else the generic GEMM', () => {
  const { cu, kernels, batch, log } = fakes();
  launchLinear(cu, kernels, 0n as unknown as CuStream, batch, q8, call(33), gemm(true));
  const ops = log.map((e) => e.op);
  assert.equal(ops[0], 'dequant_q8_tile');
  assert.ok(ops[1].startsWith('gemm_wgmma_'), ops.join(' '));
  log.length = 0;
  launchLinear(cu, kernels, 0n as unknown as CuStream, batch, q8, call(33), gemm(false));
  assert.deepEqual(log.map((e) => e.op), ['gemm_gptq']);
});

const q4 = (n: number, groupSize = 128): CudaGptq => ({ ...q8, bits: 4, storedBits: 4, layout: 'q4', outFeatures: n, groupSize });

test('q4 layout, prompt rows: gemm_q4_mma below WGMMA_MIN_ROWS, the register-A GEMM up to rsMaxRows, then dequant + wgmma', () => {
  const { cu, kernels, batch, log } = fakes();
  const ops = (w: CudaGptq, rows: number, g: GemmOptions): string[] => {
    log.length = 0;
    launchLinear(cu, kernels, 0n as unknown as CuStream, batch, w, call(rows), g);
    return log.map((e) => e.op);
  };
  assert.deepEqual(ops(q4(N), 300, gemm(true)), ['gemm_q4_mma']);
  // N 1024: 8 column tiles; 2 or 4 token tiles are few enough to split K (rsSplits), so y is zeroed first
  assert.deepEqual(ops(q4(N), 300, gemm(true, 1024, 64)), ['memset', 'gemm_rs_256'], 'rsMinRows below WGMMA_MIN_ROWS');
  assert.deepEqual(ops(q4(N), 512, gemm(true)), ['memset', 'gemm_rs_256']);
  assert.equal(log[1].grid?.x, 16 * rsSplits(16, K / 64, 132), 'one block per tile and K range');
  assert.deepEqual(ops(q4(N), 100, gemm(true, 1024, 33)), ['memset', 'gemm_rs_128'], `up to ${RS_SMALL_ROWS} rows: 128-token tiles`);
  assert.deepEqual(ops(q4(8192), 1024, gemm(true)), ['gemm_rs_256'], '4 · 64 tiles fill the SMs: one K range');
  assert.equal(log[0].grid?.x, 132, 'at most one block per SM');
  log.length = 0;
  launchLinear(cu, kernels, 0n as unknown as CuStream, batch, q4(N), call(512, true), gemm(true));
  assert.deepEqual(log.map((e) => e.op), ['gemm_rs_256'], 'an accumulating split launch adds onto y');
  const dequantThenWgmma = (o: string[]): boolean => o[0] === 'dequant_q4_tile' && o[1].startsWith('gemm_wgmma_');
  assert.ok(dequantThenWgmma(ops(q4(N), 1025, gemm(true))), log.map((e) => e.op).join(' '));
  assert.ok(dequantThenWgmma(ops(q4(N), 600, gemm(true, 0))), 'rsMaxRows 0: never');
  assert.deepEqual(ops(q4(N), 600, gemm(false)), ['gemm_q4_mma'], 'no Hopper GEMM');
  // shapes the register-A kernel does not take: N % 32 (its zeros map's rows), group size 96
  assert.equal(ops(q4(1000), 600, gemm(true))[0], 'dequant_q4_tile');
  assert.equal(ops(q4(N, 96), 600, gemm(true))[0], 'dequant_q4_tile');
  assert.deepEqual(ops(q4(N, 32), 600, gemm(true)), ['memset', 'gemm_rs_256']);
});

test('rsSplits: one K range where the tiles fill half the SMs, else as many as the SMs allow, at least 16 slices each', () => {
  assert.equal(rsSplits(40, 80, 132), 3); // 13B q/k/v/o below 257 rows
  assert.equal(rsSplits(40, 216, 132), 3); // down_proj
  assert.equal(rsSplits(16, 80, 132), 5); // limited by 16 slices per range
  assert.equal(rsSplits(66, 80, 132), 2);
  assert.equal(rsSplits(67, 80, 132, 0), 1); // (with the fill rule: 3 ranges, 201 fill 0.76 of two waves)
  assert.equal(rsSplits(2, 4, 132), 1); // tiny models: K of 4 slices never splits
});

test('rsSplits: tiles that leave the last wave part-empty split K into the fewest ranges that fill RS_SPLIT_MIN_FILL of the turns', () => {
  assert.equal(RS_SPLIT_MIN_FILL, 0.9);
  assert.equal(rsSplits(320, 80, 132), 2); // 13B o_proj at 2048 rows: 320 tiles fill 0.81, 640 ranges 0.97
  assert.equal(rsSplits(320, 216, 132), 2); // down_proj
  assert.equal(rsSplits(80, 80, 132), 3); // 512 rows: 80 tiles 0.61; 160 ranges still 0.61, 240 fill 0.91
  assert.equal(rsSplits(160, 80, 132), 3); // 1024 rows: 0.61, 0.81, then 0.91
  assert.equal(rsSplits(240, 80, 132), 1, '1536 rows: 0.91 already');
  assert.equal(rsSplits(256, 64, 132), 1, '7B at 2048 rows: 0.97');
  assert.equal(rsSplits(320, 80, 132, 0), 1, 'minFill 0: only the half-the-SMs rule');
  assert.equal(rsSplits(40, 80, 132, 0), 3, 'which still splits few tiles');
  assert.equal(rsSplits(320, 40, 132), 2, 'ranges of at least 16 slices: 40 slices allow 2');
  assert.equal(rsSplits(320, 31, 132), 1, '31 slices allow none');
  assert.equal(rsSplits(170, 48, 132), 3, 'the best filling when none reaches minFill: 170 0.64, 340 0.86, 510 0.97');
  assert.equal(rsSplits(139, 64, 132), 4, '139 0.53, 278 0.70, 417 0.79, 556 0.84: the best is 4');
});

test('rsTakes: always up to RS_MAX_ROWS rows, above them only where the 256-token tiles fill the waves of SMs well', () => {
  const h200 = { minRows: 17, maxRows: RS_MAX_ROWS, minFill: RS_MIN_FILL, smCount: 132, splitFill: 0 };
  const q13b = rsPlainTiles(5120), gateUp13b = 13824 / 64, q7b = rsPlainTiles(4096);
  assert.equal(q13b, 40);
  assert.ok(Math.abs(rsWaveFill(2048, q13b, 132) - 320 / 396) < 1e-12); // 8 token tiles x 40: 2.42 waves
  assert.ok(Math.abs(rsWaveFill(2048, gateUp13b, 132) - 1728 / 1848) < 1e-12);
  assert.equal(rsTakes(768, q13b, h200), true);
  assert.equal(rsTakes(1024, q13b, h200), false, '160 tiles: 1.2 waves');
  assert.equal(rsTakes(1024, gateUp13b, h200), true, '864 tiles: 6.5 waves');
  assert.equal(rsTakes(1536, q13b, h200), true, '240 tiles: 0.91');
  assert.equal(rsTakes(2048, q13b, h200), true, '0.81');
  assert.equal(rsTakes(1792, q13b, h200), false, '280 tiles: 0.71');
  assert.equal(rsTakes(2048, q7b, h200), true, '256 tiles: 0.97');
  assert.equal(rsTakes(16, q13b, h200), false, 'below minRows');
  assert.equal(rsTakes(600, q13b, { ...h200, maxRows: 0 }), false, 'maxRows 0: never');
  assert.equal(rsTakes(2048, q13b, { ...h200, maxRows: 0 }), false, 'maxRows 0: never, whatever the fill');
  assert.equal(rsTakes(2048, gateUp13b, { ...h200, minFill: 1.01 }), false, 'fill above 1: only up to maxRows');
  // a plain launch (nk given) counts its K ranges (rsSplits with splitFill)
  const split = { ...h200, splitFill: RS_SPLIT_MIN_FILL };
  assert.equal(rsTakes(1024, q13b, split, 80), true, '160 tiles in 3 ranges: 0.91');
  assert.equal(rsTakes(1024, q13b, split), false, 'without nk (q/k/v, gate/up launches): whole tiles');
  assert.equal(rsTakes(1024, q13b, h200, 80), false, 'splitFill 0: whole tiles');
  assert.equal(rsTakes(1792, q13b, split, 80), true, '280 tiles in 3 ranges: 0.91');
});

test('rsQkvFits: one launch for q, k and v of one shape, group size and permutation, past the 128-token build, whole tiles', () => {
  const w = q4(5120);
  assert.equal(rsQkvFits([w, w, w], 2048, rsBuildFor(2048, RS_SMALL_ROWS), 132), true);
  assert.equal(rsQkvFits([w, w, w], RS_SMALL_ROWS, rsBuildFor(RS_SMALL_ROWS, RS_SMALL_ROWS), 132), false, '128-token build');
  assert.equal(rsQkvFits([w, w], 2048, rsBuildFor(2048, RS_SMALL_ROWS), 132), false, 'two weights');
  assert.equal(rsQkvFits([w, q4(1024), q4(1024)], 2048, rsBuildFor(2048, RS_SMALL_ROWS), 132), false, 'grouped k/v heads: other shapes');
  assert.equal(rsQkvFits([w, w, q4(5120, 64)], 2048, rsBuildFor(2048, RS_SMALL_ROWS), 132), false, 'another group size');
  assert.equal(rsQkvFits([w, w, { ...w, perm: 0x4000n as DevicePtr }], 2048, rsBuildFor(2048, RS_SMALL_ROWS), 132), false, 'another permutation');
  assert.equal(rsQkvFits([w, w, { ...w, bias: 0x5000n as DevicePtr }], 2048, rsBuildFor(2048, RS_SMALL_ROWS), 132), false, 'a bias');
  assert.equal(rsQkvFits([q4(256), q4(256), q4(256)], 200, rsBuildFor(200, RS_SMALL_ROWS), 132), false, 'few tiles would split K');
  assert.equal(rsQkvFits([w, w, w], 1024, rsBuildFor(1024, RS_SMALL_ROWS), 132), true, '480 tiles fill 0.91, 160 apart 0.61');
  assert.equal(rsQkvFits([w, w, w], 512, rsBuildFor(512, RS_SMALL_ROWS), 132), true, '240 tiles fill 0.91, 80 apart 0.61');
  assert.equal(rsQkvFits([w, w, w], 1536, rsBuildFor(1536, RS_SMALL_ROWS), 132), false, '720 tiles fill 0.91, as 240 apart do');
  assert.equal(rsQkvFits([w, w, w], 768, rsBuildFor(768, RS_SMALL_ROWS), 132), false, '360 tiles fill 0.91, as 120 apart do');
});

test('rsQkvRopeOverlaps: attention overlaps the q/k/v rope launch only where its tiles take 4 rounds of SMs or more', () => {
  assert.equal(rsQkvRopeOverlaps(2048, 5120, 132), true, '13B: 960 tiles, 8 rounds');
  assert.equal(rsQkvRopeOverlaps(1024, 5120, 132), true, '480 tiles, 4 rounds');
  assert.equal(rsQkvRopeOverlaps(512, 5120, 132), false, '240 tiles, 2 rounds: every head ends in the last');
  assert.equal(rsQkvRopeOverlaps(2048, 2560, 132), true, 'the GPU test\'s 20 heads: 480 tiles, 4 rounds');
  assert.equal(rsQkvRopeOverlaps(700, 1024, 132), false, 'small: 72 tiles, one round');
  assert.equal(rsQkvRopeOverlaps(1024, 5120, 114), true, 'fewer SMs, more rounds');
  assert.equal(rsQkvRopeHeadTiles(2048), 24, 'a head\'s counter gains its q, k and v tiles of 8 token tiles');
  assert.equal(rsQkvRopeHeadTiles(600), 9, 'a partial last token tile counts');
});
