import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Scheduler, type Slot } from '../../src/server/engine/scheduler.js';
import { ApiError } from '../../src/server/apiError.js';

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

test('slots are granted in arrival order (FIFO), one at a time with one slot', async () => {
  const s = new Scheduler({ maxConcurrent: 1, maxQueued: 10 });
  const order: number[] = [];
  const first = await s.acquire();
  const waiting = [1, 2, 3].map((i) => s.acquire().then((slot) => { order.push(i); return slot; }));
  await tick();
  assert.equal(s.runningCount, 1);
  assert.equal(s.queuedCount, 3);
  first.release();
  for (const p of waiting) (await p).release();
  assert.deepEqual(order, [1, 2, 3]);
  assert.equal(s.runningCount, 0);
  assert.equal(s.queuedCount, 0);
});

test('a long-queued request is not overtaken by later ones when slots free up', async () => {
  const s = new Scheduler({ maxConcurrent: 2, maxQueued: 10 });
  const a = await s.acquire();
  const b = await s.acquire();
  const got: string[] = [];
  const c = s.acquire().then((x) => { got.push('c'); return x; });
  const d = s.acquire().then((x) => { got.push('d'); return x; });
  b.release();
  await tick();
  assert.deepEqual(got, ['c']);
  a.release();
  await tick();
  assert.deepEqual(got, ['c', 'd']);
  (await c).release();
  (await d).release();
});

test('more than maxQueued waiters: 429 ApiError at once, without disturbing the queue', async () => {
  const s = new Scheduler({ maxConcurrent: 1, maxQueued: 2 });
  const held = await s.acquire();
  const q1 = s.acquire();
  const q2 = s.acquire();
  await assert.rejects(s.acquire(), (err: unknown) => err instanceof ApiError && err.status === 429 && err.code === 'queue_full');
  assert.equal(s.queuedCount, 2);
  held.release();
  (await q1).release();
  (await q2).release();
});

test('maxQueued 0: busy means 429, idle means run', async () => {
  const s = new Scheduler({ maxConcurrent: 1, maxQueued: 0 });
  const held = await s.acquire();
  await assert.rejects(s.acquire(), (err: unknown) => err instanceof ApiError && err.status === 429);
  held.release();
  (await s.acquire()).release();
});

test('an aborted waiter leaves the queue and the next one gets the slot', async () => {
  const s = new Scheduler({ maxConcurrent: 1, maxQueued: 5 });
  const held = await s.acquire();
  const gone = new AbortController();
  const p1 = s.acquire(gone.signal);
  const p2 = s.acquire();
  gone.abort(new Error('client left'));
  await assert.rejects(p1, /client left/);
  assert.equal(s.queuedCount, 1);
  held.release();
  const slot: Slot = await p2;
  assert.equal(s.runningCount, 1);
  slot.release();
  slot.release(); // idempotent
  assert.equal(s.runningCount, 0);
});

test('an already-aborted signal is refused before queueing', async () => {
  const s = new Scheduler({ maxConcurrent: 1, maxQueued: 5 });
  const c = new AbortController();
  c.abort(new Error('gone'));
  await assert.rejects(s.acquire(c.signal), /gone/);
  assert.equal(s.runningCount, 0);
});

test('exclusive jobs wait for running slots, keep FIFO, and block later requests', async () => {
  const s = new Scheduler({ maxConcurrent: 2, maxQueued: 5 });
  const events: string[] = [];
  const a = await s.acquire();
  const ex = s.exclusive(async () => {
    events.push(`exclusive (running=${s.runningCount})`);
    await tick();
    events.push('exclusive done');
  });
  const later = s.acquire().then((slot) => { events.push('later'); return slot; });
  await tick();
  assert.deepEqual(events, [], 'a free slot does not let the later request jump the exclusive job');
  a.release();
  await ex;
  (await later).release();
  assert.deepEqual(events, ['exclusive (running=0)', 'exclusive done', 'later']);
});

test('setConcurrency admits more waiters at once', async () => {
  const s = new Scheduler({ maxConcurrent: 1, maxQueued: 5 });
  const a = await s.acquire();
  const b = s.acquire();
  s.setConcurrency(2);
  const slotB = await b;
  assert.equal(s.runningCount, 2);
  a.release();
  slotB.release();
});

test('fair under load: 20 requests of one slot finish in arrival order', async () => {
  const s = new Scheduler({ maxConcurrent: 1, maxQueued: 20 });
  const done: number[] = [];
  await Promise.all(Array.from({ length: 20 }, async (_, i) => {
    const slot = await s.acquire();
    try {
      await tick();
      done.push(i);
    } finally {
      slot.release();
    }
  }));
  assert.deepEqual(done, Array.from({ length: 20 }, (_, i) => i));
});
