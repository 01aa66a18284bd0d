/**
 * The CUDA backend's batched decode ops (batchOps.ts) on the host side only: a fake host records
 * flushes, scratch requests, table copies and launches. Each op checks its operands before anything
 * goes out, sends held work first, refuses to be captured, and launches its kernel with the argument
 * layout batch_decode.cu declares.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BatchOps, type BatchOpsHost, type DeviceRows } from '../../src/backends/cuda/batchOps.js';
import { BATCH_SEQ_BYTES, type BatchKv } from '../../src/backends/cuda/batchTables.js';
import type { CuStream, DevicePtr, Dim3, Driver, HostBuffer } from '../../src/backends/cuda/driver.js';
import { CudaUnsupportedError } from '../../src/backends/cuda/errors.js';
import { DeviceMemory } from '../../src/backends/cuda/memory.js';
import type { KernelModule } from '../../src/backends/cuda/module.js';

type Event =
  | { readonly op: 'flush' | 'sync' }
  | { readonly op: 'scratch'; readonly part: number; readonly tickets: number }
  | { readonly op: 'copy'; readonly ptr: DevicePtr; readonly data: Buffer }
  | { readonly op: 'launch'; readonly name: string; readonly grid: Dim3; readonly block: Dim3; readonly args: Buffer[] };

const PART = 0xa000_0000n as DevicePtr, TICKETS = 0xb000_0000n as DevicePtr;

function setup(): { ops: BatchOps; events: Event[]; capture: { on: boolean; bound: number; moved: number } } {
  const events: Event[] = [];
  const capture = { on: false, bound: Infinity, moved: 0 };
  let next = 0x7000_0000n;
  const cu = {
    memAlloc: (bytes: number): DevicePtr => { const p = next as DevicePtr; next += BigInt(bytes + 4096); return p; },
    memFree: (): void => {},
    streamSynchronize: (): void => { events.push({ op: 'sync' }); },
    copyHtoD: (ptr: DevicePtr, src: HostBuffer, bytes: number): void => {
      events.push({ op: 'copy', ptr, data: Buffer.from(Buffer.from(src.buffer, src.byteOffset, bytes)) });
    },
  } as unknown as Driver;
  const kernels = {
    launch: (name: string, grid: Dim3, block: Dim3, args: Buffer[]): void => {
      events.push({ op: 'launch', name, grid, block, args: args.map((b) => Buffer.from(b)) });
    },
  } as unknown as KernelModule;
  const host: BatchOpsHost = {
    cu, mem: new DeviceMemory(cu), stream: 1n as unknown as CuStream, kernels, smCount: 132,
    capturing: () => capture.on,
    captureBound: () => capture.bound,
    tablesMoved: () => { capture.moved++; },
    flush: () => { events.push({ op: 'flush' }); },
    attnScratch: (part, tickets) => { events.push({ op: 'scratch', part, tickets }); return { part: PART, tickets: TICKETS }; },
  };
  return { ops: new BatchOps(host), events, capture };
}

const rowsAt = (ptr: bigint, rows: number, cols: number): DeviceRows => ({ rows, cols, ptr: ptr as DevicePtr });
const u64 = (b: Buffer): bigint => b.readBigUInt64LE(0);
const i32 = (b: Buffer): number => b.readInt32LE(0);
const f32 = (b: Buffer): number => b.readFloatLE(0);
const launches = (ev: Event[]) => ev.filter((e): e is Extract<Event, { op: 'launch' }> => e.op === 'launch');
const copies = (ev: Event[]) => ev.filter((e): e is Extract<Event, { op: 'copy' }> => e.op === 'copy');

function kv(id: number, maxSeq: number, kvHeads = 2, headDim = 64): BatchKv {
  return { layers: 4, maxSeq, kvHeads, headDim, k: BigInt(0x100000 * id) as DevicePtr, v: BigInt(0x100000 * id + 0x80000) as DevicePtr };
}

test('ropeRows: flush, one position table, then rope_rows_f32 (x, rowStride, heads, headDim, theta, pos)', () => {
  const { ops, events } = setup();
  const x = rowsAt(0x5000n, 4, 4 * 64 + 32); // a row stride wider than heads·headDim
  ops.ropeRows(x, 4, 64, Int32Array.of(7, 0, 300), 10000, 3);
  assert.equal(events[0].op, 'flush', 'held one-row work first');
  const [pos] = copies(events);
  assert.deepEqual([0, 1, 2].map((t) => pos.data.readInt32LE(t * 4)), [7, 0, 300]);
  const [l] = launches(events);
  assert.equal(l.name, 'rope_rows_f32');
  assert.deepEqual([l.grid, l.block], [{ x: Math.ceil((4 * 64) / 2 / 256), y: 3 }, { x: 256 }]);
  assert.deepEqual([u64(l.args[0]), i32(l.args[1]), i32(l.args[2]), i32(l.args[3]), f32(l.args[4]), u64(l.args[5])],
    [0x5000n, 4 * 64 + 32, 4, 64, 10000, pos.ptr]);
});

test('writeKvRows: cache and position tables, then kv_write_rows (seqs, pos, layer, k, v, width)', () => {
  const { ops, events } = setup();
  const caches = [kv(1, 100), kv(2, 40)];
  ops.writeKvRows(caches, 3, Int32Array.of(99, 39), rowsAt(0x6000n, 2, 128), rowsAt(0x7000n, 2, 128), 2);
  const [pos, seqs] = copies(events);
  assert.equal(seqs.data.byteLength, 2 * BATCH_SEQ_BYTES);
  assert.equal(seqs.data.readBigUInt64LE(BATCH_SEQ_BYTES + 8), caches[1].v);
  const [l] = launches(events);
  assert.equal(l.name, 'kv_write_rows');
  assert.deepEqual(l.grid, { x: 1, y: 2 });
  assert.deepEqual([u64(l.args[0]), u64(l.args[1]), i32(l.args[2]), u64(l.args[3]), u64(l.args[4]), i32(l.args[5])],
    [seqs.ptr, pos.ptr, 3, 0x6000n, 0x7000n, 128]);
  events.length = 0;
  ops.writeKvRows(caches, 2, Int32Array.of(99, 39), rowsAt(0x6000n, 2, 128), rowsAt(0x7000n, 2, 128), 2);
  assert.deepEqual(copies(events), [], 'the next layer of the same step copies nothing');
});

test('attentionRows: splits for the longest row, shared scratch, then attn_rows_<d>', () => {
  const { ops, events } = setup();
  const heads = 8, d = 64;
  ops.attentionRows(rowsAt(0x8000n, 2, heads * d), rowsAt(0x9000n, 2, heads * d), [kv(1, 2048), kv(2, 64)],
    { heads, kvHeads: 2, headDim: d, layer: 1 }, Int32Array.of(1500, 10), 2);
  const scratch = events.find((e) => e.op === 'scratch');
  const [l] = launches(events);
  assert.equal(l.name, 'attn_rows_64');
  const splits = l.grid.y ?? 1;
  assert.ok(splits > 1, 'a 1501-position row is split');
  assert.deepEqual(scratch, { op: 'scratch', part: 2 * heads * splits * (d + 2) * 4, tickets: 2 * heads * 4 });
  assert.deepEqual([l.grid.x, l.grid.z], [heads, 2]);
  assert.deepEqual([u64(l.args[0]), u64(l.args[1]), u64(l.args[2]), u64(l.args[3])], [0x8000n, PART, TICKETS, 0x9000n]);
  assert.deepEqual([i32(l.args[6]), i32(l.args[7]), i32(l.args[8]), i32(l.args[9])], [1, heads, 2, splits]);
  assert.equal(f32(l.args[10]), Math.fround(1 / Math.sqrt(d)));
});

test('a recorded step: prepare writes the tables first, the ops then copy nothing and attention plans for the bucket', () => {
  const { ops, events, capture } = setup();
  const heads = 8, d = 64, caches = [kv(1, 4096), kv(2, 4096)], positions = Int32Array.of(5, 90);
  ops.prepare(caches, positions, 2);
  const prepared = copies(events);
  assert.equal(prepared.length, 2, 'positions and caches');
  capture.on = true;
  capture.bound = 2048;
  ops.ropeRows(rowsAt(0x5000n, 2, heads * d), heads, d, positions, 1e4, 2);
  ops.writeKvRows(caches, 0, positions, rowsAt(0x6000n, 2, 128), rowsAt(0x7000n, 2, 128), 2);
  ops.attentionRows(rowsAt(0x8000n, 2, heads * d), rowsAt(0x9000n, 2, heads * d), caches, { heads, kvHeads: 2, headDim: d, layer: 0 }, positions, 2);
  assert.equal(copies(events).length, 2, 'no copies while recording');
  const [rope, write, attn] = launches(events);
  assert.equal(u64(rope.args[5]), prepared[0].ptr);
  assert.deepEqual([u64(write.args[0]), u64(write.args[1])], [prepared[1].ptr, prepared[0].ptr]);
  // splits for 2048 positions (the bucket), where an eager call plans for 91
  const eager = setup();
  eager.ops.attentionRows(rowsAt(0x8000n, 2, heads * d), rowsAt(0x9000n, 2, heads * d), caches, { heads, kvHeads: 2, headDim: d, layer: 0 }, positions, 2);
  assert.ok((attn.grid.y ?? 1) > (launches(eager.events)[0].grid.y ?? 1), `recorded splits ${attn.grid.y}`);
  // the next step's rows go into the same tables
  capture.on = false;
  ops.prepare(caches, Int32Array.of(6, 91), 2);
  const again = copies(events).slice(2);
  assert.deepEqual(again.map((c) => c.ptr), [prepared[0].ptr]);
  assert.equal(capture.moved, 0);
  assert.throws(() => { capture.on = true; ops.prepare(caches, positions, 2); }, /while recording/);
  capture.on = false;
  assert.throws(() => ops.prepare(caches, Int32Array.of(0, 4096), 2), /holds 4096 positions/);
  assert.throws(() => ops.prepare(caches, Int32Array.of(-1, 3), 2), /position -1/);
});

test('a table that moves to a larger buffer tells the host (recorded steps must go)', () => {
  const { ops, capture } = setup();
  const many = Array.from({ length: 40 }, (_, i) => kv(i + 1, 64));
  ops.prepare(many.slice(0, 2), Int32Array.of(0, 1), 2);
  assert.equal(capture.moved, 0);
  ops.prepare(many, new Int32Array(40), 40);
  assert.ok(capture.moved > 0);
});

test('each op refuses an odd or unsupported head size and out-of-range operands, launching nothing', () => {
  const { ops, events } = setup();
  const shape = { heads: 8, kvHeads: 2, headDim: 64, layer: 0 };
  const x = rowsAt(0x5000n, 2, 512);
  assert.throws(() => ops.ropeRows(x, 8, 63, Int32Array.of(0, 1), 1e4, 2), RangeError);
  assert.throws(() => ops.attentionRows(x, x, [kv(1, 8), kv(2, 8)], { ...shape, headDim: 96 }, Int32Array.of(0, 1), 2), CudaUnsupportedError);
  assert.throws(() => ops.attentionRows(x, x, [kv(1, 8), kv(2, 8)], { ...shape, kvHeads: 3 }, Int32Array.of(0, 1), 2), CudaUnsupportedError);
  assert.throws(() => ops.writeKvRows([kv(1, 8), kv(2, 8)], 0, Int32Array.of(0, 8), rowsAt(1n, 2, 128), rowsAt(2n, 2, 128), 2), RangeError, 'position 8 of an 8-position cache');
  assert.throws(() => ops.writeKvRows([kv(1, 8)], 0, Int32Array.of(0, 1), rowsAt(1n, 2, 128), rowsAt(2n, 2, 128), 2), RangeError, 'one cache for two rows');
  assert.deepEqual(launches(events), []);
  assert.deepEqual(copies(events), []);
});
