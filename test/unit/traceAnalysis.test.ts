/**
 * bench/traceAnalysis.ts on hand-made trace records (trace.cuh's 64-byte layout, absolute globaltimer ns): blocks
 * become launches, and each launch kind's span, release, body and tail are the differences of the stamps they name.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { accountByKind, bodyBySmLoad, groupLaunches, meanStepSpan, parseTrace, TRACE_RECORD_BYTES } from '../../bench/traceAnalysis.js';

const BASE = 1_700_000_000_000_000_000n; // globaltimer values are ns since the epoch: beyond a double's exact range

interface Block { t: [number, number, number, number]; kernel: number; gridX: number; gridY: number; block: number; smid?: number }

function encode(blocks: readonly Block[]): Buffer {
  const buf = Buffer.alloc(blocks.length * TRACE_RECORD_BYTES);
  blocks.forEach((b, i) => {
    const o = i * TRACE_RECORD_BYTES;
    b.t.forEach((t, j) => buf.writeBigUInt64LE(t < 0 ? 0n : BASE + BigInt(t), o + 8 * j));
    buf.writeUInt32LE(b.kernel, o + 32);
    buf.writeUInt32LE(b.gridX, o + 36);
    buf.writeUInt32LE(b.gridY, o + 40);
    buf.writeUInt32LE(b.block, o + 44);
    buf.writeUInt32LE(b.smid ?? 7, o + 48);
  });
  return buf;
}

/** a launch of `n` blocks of kernel 2 (2 x n/2 grid): block i starts at start + i, waits until released, ... */
function launch(kernel: number, n: number, start: number, released: number, mainDone: number[], end: number[]): Block[] {
  return Array.from({ length: n }, (_, i) => ({
    t: [start + i, kernel === 3 ? -1 : released + i, kernel === 3 ? -1 : mainDone[i], end[i]] as [number, number, number, number],
    kernel, gridX: 2, gridY: n / 2, block: i,
  }));
}

test('trace records: launches from blocks, and each kind\'s span, release, body and tail', () => {
  // step 1: A (kernel 2) ends at 10000; B (kernel 1) starts early at 9000, is released at 10500, main loops end at
  // 14000 / 15000, exits at 16000; attention (kernel 3) ends at 17000. Step 2, after a 100 µs gap: A again, then B.
  const blocks = [
    ...launch(2, 2, 0, 500, [8000, 9000], [9500, 10000]),
    ...launch(1, 2, 9000, 10500, [14000, 15000], [15500, 16000]),
    ...launch(3, 2, 15000, 0, [0, 0], [16500, 17000]),
    ...launch(2, 2, 117000, 117400, [125000, 126000], [126500, 127000]),
    ...launch(1, 2, 126000, 127300, [131000, 132000], [132500, 133000]),
  ];
  // records arrive in no particular order
  const shuffled = [blocks[5], blocks[0], blocks[9], blocks[2], blocks[7], blocks[1], blocks[8], blocks[3], blocks[6], blocks[4]];
  const recs = parseTrace(encode(shuffled), shuffled.length);
  assert.equal(recs.length, 10);
  assert.equal(Math.min(...recs.map((r) => r.t0)), 0, 'times are relative to the earliest start');
  assert.ok(recs.filter((r) => r.kernel === 3).every((r) => Number.isNaN(r.t1) && Number.isNaN(r.t2)), 'unset marks read as NaN');

  const launches = groupLaunches(recs);
  assert.deepEqual(launches.map((l) => l.kind), ['gemv_q4_cl 2x1', 'gemv_q4 2x1', 'attn_split 2x1', 'gemv_q4_cl 2x1', 'gemv_q4 2x1']);
  const b1 = launches[1];
  assert.deepEqual([b1.start, b1.released, b1.mainDoneMedian, b1.mainDone, b1.end], [9000, 10500, 14000, 15000, 16000]);
  assert.ok(Number.isNaN(launches[2].released), 'attention sets no wait mark');

  const acc = new Map(accountByKind(launches).map((a) => [a.kind, a]));
  // the second step's A follows a 100 µs gap: a step start, left out
  assert.equal(acc.has('gemv_q4_cl 2x1'), false);
  const b = acc.get('gemv_q4 2x1')!;
  assert.equal(b.launches, 2);
  // spans: 16000 - 10000 and 133000 - 127000; releases 500 and 300; bodies (last) 4500 and 4700, (median) 3500 and
  // 3700; tails 1000 and 1000; head starts 1000 and 1000 (ns; the account is in µs)
  assert.equal(b.span, 6);
  assert.equal(b.release, 0.4);
  assert.equal(b.body, 4.6);
  assert.equal(b.bodyMedian, 3.6);
  assert.equal(b.tail, 1);
  assert.equal(b.headStart, 1);
  assert.equal(acc.get('attn_split 2x1')!.span, 1);
  // steps: 0 → 17000 and 117000 → 133000
  assert.equal(meanStepSpan(launches), 16.5);
  // a step delimited by its kind instead (after attention), not by the gap: the second A is then accounted too
  const byKind = new Map(accountByKind(launches, (prev) => prev.kind.startsWith('attn')).map((a) => [a.kind, a]));
  assert.equal(byKind.has('gemv_q4_cl 2x1'), false);
  assert.equal(byKind.get('gemv_q4 2x1')!.launches, 2);
  // after each B: A1..B1 (0 → 16000), then attention..B2 (15000 → 133000)
  assert.equal(meanStepSpan(launches, (prev) => prev.kind.startsWith('gemv_q4 ')), (16000 + 118000) / 2 / 1000);
});

test('trace records that are not whole launches (a full buffer) are refused, naming the kind', () => {
  const blocks = launch(2, 4, 0, 10, [20, 20, 20, 20], [30, 30, 30, 30]).slice(0, 3);
  assert.throws(() => groupLaunches(parseTrace(encode(blocks), 3)), /3 blocks of gemv_q4_cl 2x2 are not whole launches of 4/);
  assert.throws(() => parseTrace(Buffer.alloc(64), 2), /2 records need 128 bytes/);
});

test('trace records: main-loop ends by how many blocks of the launch shared the SM', () => {
  // one launch of 4 blocks released at 100: blocks 0-2 on SM 5 end their main loops at 1100, 1300, 1600; block 3
  // alone on SM 9 at 600. A second launch of the same kind puts 2 blocks on each of two SMs (ends 1100 / 2100).
  const a = launch(2, 4, 0, 100, [1100, 1300, 1600, 600], [1700, 1700, 1700, 1700]).map((b, i) => ({ ...b, t: [b.t[0], 100, b.t[2], b.t[3]] as Block['t'], smid: i < 3 ? 5 : 9 }));
  const b = launch(2, 4, 5000, 5100, [6100, 6100, 7100, 7100], [7200, 7200, 7200, 7200]).map((x, i) => ({ ...x, t: [x.t[0], 5100, x.t[2], x.t[3]] as Block['t'], smid: i < 2 ? 1 : 2 }));
  const blocks = [...a, ...b];
  const byLoad = bodyBySmLoad(groupLaunches(parseTrace(encode(blocks), blocks.length))).get('gemv_q4_cl 2x2')!;
  assert.deepEqual([...byLoad.keys()], [1, 2, 3]);
  assert.deepEqual(byLoad.get(1), { blocks: 1, body: 0.5 });
  assert.deepEqual(byLoad.get(2), { blocks: 4, body: 1.5 });
  assert.deepEqual(byLoad.get(3), { blocks: 3, body: (1000 + 1200 + 1500) / 3 / 1000 });
  // a kind without main-loop marks (lm_head's gemv_f16 sets only the wait's) has no entry
  const f16 = launch(4, 2, 9000, 9100, [-1, -1], [9500, 9600]);
  assert.equal(bodyBySmLoad(groupLaunches(parseTrace(encode(f16), 2))).size, 0);
});
