/**
 * The batched device argmax (argmax_rows_f32, argmaxRows.ts) against an independent host argmax on
 * rows built to break a wrong tie rule or reduction (test/support/argmaxCases.ts: ties inside a
 * float4, across rounds, lanes and warps, -Infinity and NaN rows), outputs poisoned first; against
 * the one-row device argmax row by row; and LlamaModel.decodeBatch on CUDA giving greedy rows through
 * one argmaxRows per step, with the ids the same step's logits give. Skipped, saying why, without a GPU.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Activation } from '../../src/backends/backend.js';
import { launchArgmaxRows } from '../../src/backends/cuda/argmaxRows.js';
import type { DevicePtr } from '../../src/backends/cuda/driver.js';
import type { DecodeRow, RowResult } from '../../src/model/batch.js';
import { LlamaModel } from '../../src/model/llama.js';
import { argmaxCases, referenceArgmax, ROW_KINDS } from '../support/argmaxCases.js';
import { EMBEDDED_MODEL } from '../support/paths.js';
import { gpu, input, skipNoGpu } from './support.js';

const POISON = -7;
/** vocabularies: LLaMA's 32000 (float4 path, one round of loads), odd (scalar path), tiny, past 32768 (the loop after the unrolled rounds) */
const COLS = [32000, 32001, 7, 4096, 151936];
const ROWS = [1, 2, ROW_KINDS.length, 32];

test('argmax_rows_f32 (launcher, poisoned output): every row equals the host argmax, ties to the lowest id', { skip: skipNoGpu }, () => {
  const g = gpu();
  g.synchronize();
  for (const cols of COLS) {
    for (const rows of ROWS) {
      // one kind of each row at least once; 32 rows put structural ties in several places
      const { logits, kinds } = argmaxCases(rows, cols, cols * 100 + rows);
      // +16 bytes of slack: the second pass reads the rows from a pointer 4 bytes on (no row 16-byte aligned)
      const x = g.mem.alloc(logits.byteLength + 16), out = g.mem.alloc(rows * 4);
      try {
        for (const shift of [0, 4]) {
          const at = (x + BigInt(shift)) as DevicePtr;
          g.cu.copyHtoD(at, logits, logits.byteLength, g.stream);
          g.cu.memsetD32(out, POISON, rows, g.stream);
          const ids = launchArgmaxRows(g, { ptr: at, rows, cols }, rows, out);
          for (let r = 0; r < rows; r++) {
            const want = referenceArgmax(logits.subarray(r * cols, (r + 1) * cols));
            assert.equal(ids[r], want, `cols ${cols}, rows ${rows}, shift ${shift}: row ${r} (${kinds[r]})`);
          }
        }
      } finally {
        g.mem.free(x);
        g.mem.free(out);
      }
    }
  }
});

test('argmaxRows on the backend: same ids as the one-row argmax_f32 row by row; stale ids never survive', { skip: skipNoGpu }, () => {
  const g = gpu();
  for (const cols of [32000, 32001]) {
    const rows = 24;
    // first every row's maximum at the last id: the scratch then holds cols-1 everywhere (a poison)
    const last = new Float32Array(rows * cols);
    for (let r = 0; r < rows; r++) last[(r + 1) * cols - 1] = 1;
    assert.deepEqual([...g.argmaxRows(input(g, rows, cols, last), rows)], Array(rows).fill(cols - 1));
    const { logits, kinds } = argmaxCases(rows, cols, cols + 7);
    const x = input(g, rows + 1, cols, logits); // one row more than asked for: only `rows` read
    const ids = g.argmaxRows(x, rows);
    assert.equal(ids.length, rows);
    const one = g.allocActivation(1, cols);
    for (let r = 0; r < rows; r++) {
      g.copyRows(one, x, r, 1);
      const want = referenceArgmax(logits.subarray(r * cols, (r + 1) * cols));
      assert.equal(ids[r], want, `cols ${cols}: row ${r} (${kinds[r]})`);
      assert.equal(g.argmax(one), ids[r], `cols ${cols}: row ${r} (${kinds[r]}), argmax_f32`);
    }
    assert.deepEqual(g.argmaxRows(x, 0), new Int32Array(0));
    assert.throws(() => g.argmaxRows(x, rows + 2), RangeError);
  }
});

const PROMPTS = [[1, 835, 5618, 29901, 1724, 338, 278], [1, 450, 4955], [1, 319, 29871, 29941, 29889, 1094, 1576, 263], [1, 910], [1, 6204, 278]]
  .map((p) => p.map((id) => id % 4096));

test('decodeBatch on CUDA: greedy rows through one argmaxRows per step, ids matching the same step\'s logits', { skip: skipNoGpu }, async () => {
  const g = gpu();
  const n = PROMPTS.length;
  // two models on one backend, fed the same rows: `greedy` asks for ids, `full` for the logits (not disposed: the backend is shared)
  const greedy = await LlamaModel.create(EMBEDDED_MODEL, { backend: g, sequences: n, contextLength: 64 });
  const full = await LlamaModel.create(EMBEDDED_MODEL, { backend: g, sequences: n, contextLength: 64 });
  const calls = { rows: [] as number[], argmax: 0 };
  const rowsOp = g.argmaxRows.bind(g), oneOp = g.argmax.bind(g);
  g.argmaxRows = (x: Activation, rows: number): Int32Array => { calls.rows.push(rows); return rowsOp(x, rows); };
  g.argmax = (x: Activation): number => { calls.argmax++; return oneOp(x); };
  try {
    const next: number[] = [];
    for (let i = 0; i < n; i++) {
      next[i] = await greedy.forwardArgmax(PROMPTS[i], 0, i);
      await full.feed(PROMPTS[i], 0, i);
    }
    for (let s = 0; s < 6; s++) {
      const rows = PROMPTS.map((p, i): DecodeRow => ({ slot: i, token: next[i], pos: p.length + s, pick: { kind: 'argmax' } })).reverse();
      calls.rows = [];
      calls.argmax = 0;
      const ids = await greedy.decodeBatch(rows);
      assert.deepEqual(calls, { rows: [n], argmax: 0 }, `step ${s}: one argmaxRows, no per-row argmax`);
      const logits: RowResult[] = await full.decodeBatch(rows.map((r) => ({ ...r, pick: { kind: 'logits' } })));
      for (let t = 0; t < n; t++) {
        const l = logits[t], id = ids[t];
        assert.ok(l instanceof Float32Array && typeof id === 'number');
        const want = referenceArgmax(l);
        // the two models' kernels may round differently in the last bit: a near tie may go either way
        if (id !== want) assert.ok(l[want] - l[id] <= 1e-4 * Math.abs(l[want]), `step ${s}, slot ${rows[t].slot}: id ${id} (${l[id]}) vs ${want} (${l[want]})`);
        next[rows[t].slot] = id;
      }
    }
  } finally {
    g.argmaxRows = rowsOp;
    g.argmax = oneOp;
  }
});

// a figure printed for the record, not a speed check (speed is for the benchmarks): one device wait per step
// against `rows` of them
test('argmaxRows latency next to the per-row path it replaces (copyRows + argmax_f32 per row)', { skip: skipNoGpu }, () => {
  const g = gpu();
  const cols = 32000;
  const time = (f: () => unknown): number => {
    for (let i = 0; i < 10; i++) f();
    const t0 = performance.now();
    for (let i = 0; i < 100; i++) f();
    return ((performance.now() - t0) / 100) * 1000;
  };
  const us: Record<string, { batched: number; perRow: number }> = {};
  const one = g.allocActivation(1, cols);
  for (const rows of [2, 8, 32]) {
    const x = input(g, rows, cols, argmaxCases(rows, cols, rows).logits);
    const batched = time(() => g.argmaxRows(x, rows));
    const perRow = time(() => {
      for (let r = 0; r < rows; r++) {
        g.copyRows(one, x, r, 1);
        g.argmax(one);
      }
    });
    us[`B=${rows}`] = { batched: Math.round(batched * 10) / 10, perRow: Math.round(perRow * 10) / 10 };
  }
  console.log(`${g.deviceName}, µs per decode step's greedy pick (${cols} logits a row): ${JSON.stringify(us)}`);
});
