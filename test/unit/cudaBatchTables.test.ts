/**
 * BatchTables (the batched decode ops' device tables of positions and KV caches) on the host side
 * only: a fake driver records allocations, frees, synchronizations and copies. A table copies only
 * when its entries change, grows to at least twice its size, and frees the old table only after the
 * stream has drained (kernels already queued may still read it).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BATCH_SEQ_BYTES, BatchTables, type BatchKv } from '../../src/backends/cuda/batchTables.js';
import type { CuStream, DevicePtr, Driver, HostBuffer } from '../../src/backends/cuda/driver.js';
import { DeviceMemory } from '../../src/backends/cuda/memory.js';

type Event =
  | { readonly op: 'alloc'; readonly ptr: DevicePtr; readonly bytes: number }
  | { readonly op: 'free'; readonly ptr: DevicePtr }
  | { readonly op: 'sync' }
  | { readonly op: 'copy'; readonly ptr: DevicePtr; readonly data: Buffer };

/** The few Driver calls BatchTables and DeviceMemory make, recorded in order. */
class FakeDriver {
  readonly events: Event[] = [];
  private next = 0x7000_0000n;
  memAlloc(bytes: number): DevicePtr {
    const ptr = this.next as DevicePtr;
    this.next += BigInt(bytes + 4096);
    this.events.push({ op: 'alloc', ptr, bytes });
    return ptr;
  }
  memFree(ptr: DevicePtr): void { this.events.push({ op: 'free', ptr }); }
  streamSynchronize(): void { this.events.push({ op: 'sync' }); }
  copyHtoD(ptr: DevicePtr, src: HostBuffer, bytes: number): void {
    // the bytes as they are at the call: the driver stages pageable memory before returning
    this.events.push({ op: 'copy', ptr, data: Buffer.from(src.buffer, src.byteOffset, bytes) });
  }
  take(): Event[] { return this.events.splice(0); }
}

function setup(): { fake: FakeDriver; tables: BatchTables } {
  const fake = new FakeDriver();
  const cu = fake as unknown as Driver;
  return { fake, tables: new BatchTables(cu, new DeviceMemory(cu), 1n as unknown as CuStream) };
}

const i32s = (b: Buffer): number[] => Array.from({ length: b.byteLength / 4 }, (_, i) => b.readInt32LE(i * 4));

function kv(id: number, maxSeq: number): BatchKv {
  return { layers: 2, maxSeq, kvHeads: 4, headDim: 64, k: BigInt(0x1000 * id) as DevicePtr, v: BigInt(0x1000 * id + 0x800) as DevicePtr };
}

test('positions: copied on first use and on change only, from a snapshot of the caller\'s array', () => {
  const { fake, tables } = setup();
  const pos = Int32Array.of(3, 5, 9);
  const p0 = tables.positions(pos, 2);
  const first = fake.take();
  assert.deepEqual(first.map((e) => e.op), ['alloc', 'copy']);
  assert.equal(first[0].op === 'alloc' && first[0].bytes, 256);
  assert.ok(first[1].op === 'copy' && first[1].ptr === p0);
  assert.deepEqual(first[1].op === 'copy' && i32s(first[1].data), [3, 5]);

  assert.equal(tables.positions(pos, 2), p0);
  assert.deepEqual(fake.take(), [], 'same positions: nothing copied');

  pos[1] = 6; // the caller reuses its array: the table must see the change
  assert.equal(tables.positions(pos, 2), p0);
  const changed = fake.take();
  assert.deepEqual(changed.map((e) => e.op), ['copy']);
  assert.deepEqual(changed[0].op === 'copy' && i32s(changed[0].data), [3, 6]);

  assert.equal(tables.positions(pos, 3), p0, 'more rows within capacity: same table');
  assert.deepEqual(fake.take().map((e) => e.op), ['copy']);
  tables.positions(pos, 2);
  assert.deepEqual(fake.take().map((e) => e.op), ['copy'], 'fewer rows is a change too');
});

test('positions: growing syncs, then frees the old table, and at least doubles', () => {
  const { fake, tables } = setup();
  const p0 = tables.positions(new Int32Array(64), 64); // 256 bytes: exactly the first table
  fake.take();
  const big = Int32Array.from({ length: 100 }, (_, i) => i);
  const p1 = tables.positions(big, 100);
  const ev = fake.take();
  assert.deepEqual(ev.map((e) => e.op), ['sync', 'free', 'alloc', 'copy']);
  assert.ok(ev[1].op === 'free' && ev[1].ptr === p0);
  assert.ok(ev[2].op === 'alloc' && ev[2].ptr === p1 && ev[2].bytes === 512, 'max(400 bytes, twice 256)');
  assert.deepEqual(ev[3].op === 'copy' && i32s(ev[3].data), Array.from(big));
  const huge = new Int32Array(1000);
  tables.positions(huge, 1000);
  const ev2 = fake.take();
  assert.ok(ev2[2].op === 'alloc' && ev2[2].bytes === 4000, 'a request above twice the old size is taken as asked');
});

test('caches: BatchSeq rows (k, v, maxSeq, pad), copied when a row\'s cache changes', () => {
  const { fake, tables } = setup();
  const a = kv(1, 100), b = kv(2, 300), c = kv(3, 50);
  const s0 = tables.caches([a, b], 2);
  const ev = fake.take();
  assert.deepEqual(ev.map((e) => e.op), ['alloc', 'copy']);
  assert.ok(ev[0].op === 'alloc' && ev[0].bytes === 256);
  assert.ok(ev[1].op === 'copy' && ev[1].ptr === s0);
  const data = ev[1].op === 'copy' ? ev[1].data : Buffer.alloc(0);
  assert.equal(data.byteLength, 2 * BATCH_SEQ_BYTES);
  for (const [t, x] of [a, b].entries()) {
    assert.equal(data.readBigUInt64LE(t * BATCH_SEQ_BYTES), x.k);
    assert.equal(data.readBigUInt64LE(t * BATCH_SEQ_BYTES + 8), x.v);
    assert.equal(data.readInt32LE(t * BATCH_SEQ_BYTES + 16), x.maxSeq);
    assert.equal(data.readInt32LE(t * BATCH_SEQ_BYTES + 20), 0);
  }
  assert.equal(tables.caches([a, b, c], 2), s0);
  assert.deepEqual(fake.take(), [], 'the same caches in the first rows: nothing copied');
  tables.caches([a, c], 2);
  assert.deepEqual(fake.take().map((e) => e.op), ['copy']);
});

test('caches: the 256-byte first table holds 10 rows; row 11 grows it to twice 240 bytes', () => {
  const { fake, tables } = setup();
  const ten = Array.from({ length: 10 }, (_, i) => kv(i + 1, 64));
  const s0 = tables.caches(ten, 10);
  fake.take();
  const s1 = tables.caches([...ten, kv(11, 64)], 11);
  const ev = fake.take();
  assert.deepEqual(ev.map((e) => e.op), ['sync', 'free', 'alloc', 'copy']);
  assert.ok(ev[1].op === 'free' && ev[1].ptr === s0);
  assert.ok(ev[2].op === 'alloc' && ev[2].ptr === s1 && ev[2].bytes === 480);
});

test('the two tables are separate allocations and do not disturb each other', () => {
  const { fake, tables } = setup();
  const p = tables.positions(Int32Array.of(1), 1);
  const s = tables.caches([kv(1, 8)], 1);
  assert.notEqual(p, s);
  fake.take();
  tables.positions(Int32Array.of(2), 1);
  assert.deepEqual(fake.take().map((e) => e.op), ['copy'], 'a position change copies only positions');
  assert.equal(tables.caches([kv(1, 8)], 1) === s, true);
  assert.deepEqual(fake.take().map((e) => e.op), ['copy'], 'a new BatchKv object (same contents) counts as a change');
});
