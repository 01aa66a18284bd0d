/**
 * Recorded batched decode steps (CudaBackend.decodeStep): a step of 2..batchGraphRows rows is recorded
 * once per row count and position bucket and replayed with each step's ids, positions and caches. The
 * replays must compute what the eager batched pass computes, step after step, while the rows' slots,
 * their order and their positions change (crossing the 128 and 512 position buckets) and rows of
 * different lengths share a step. A small synthetic LLaMA with head size 128 (act-order, so the
 * batched linears gather x), its KV caches refilled from the same prompts before each way.
 * Logits agree up to float-atomic order in the split-K sums.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { LlamaModel } from '../../src/model/llama.js';
import type { DecodeRow } from '../../src/model/batch.js';
import { synthesize } from '../../src/synth/synth.js';
import { gpu, normErr, skipNoGpu } from './support.js';

const SHAPE = { hidden: 512, ffn: 1408, layers: 2, heads: 4, vocab: 4096 };
const work = mkdtempSync(path.join(tmpdir(), 'qllama-batch-graph-'));
after(() => rmSync(work, { recursive: true, force: true }));

const TOL = 2e-3;
/** prompt lengths of the 4 slots: the longest crosses 512 during the steps, one crosses 128 */
const PROMPTS = [20, 125, 300, 508];
const tokenAt = (slot: number, i: number): number => (slot * 7919 + i * 104729 + 11) % SHAPE.vocab;

/** which slots each step decodes, in row order (2..4 rows, changing sets and orders) */
const STEPS: number[][] = [[0, 1], [1, 0], [2, 3, 1], [3, 0], [0, 1, 2, 3], [3, 2], [1, 3, 0], [2, 0], [0, 1, 2, 3], [3, 1]];

async function runSteps(model: LlamaModel): Promise<Float32Array[][]> {
  const pos = [...PROMPTS];
  for (let s = 0; s < PROMPTS.length; s++) await model.feed(Array.from({ length: PROMPTS[s] }, (_, i) => tokenAt(s, i)), 0, s);
  const out: Float32Array[][] = [];
  for (const [i, slots] of STEPS.entries()) {
    const rows: DecodeRow[] = slots.map((slot) => ({ slot, token: tokenAt(slot, 1000 + i), pos: pos[slot] }));
    const res = await model.decodeBatch(rows);
    for (const slot of slots) pos[slot]++;
    out.push(res.map((r) => {
      assert.ok(r instanceof Float32Array, 'logits rows');
      return r;
    }));
  }
  return out;
}

test('recorded batched decode steps give the eager pass\'s logits as slots, orders, row counts and buckets change', { skip: skipNoGpu }, async () => {
  const dir = path.join(work, 'ao');
  await synthesize({ shape: SHAPE, bits: 4, groupSize: 128, actOrder: true, out: dir, seed: 5 });
  const g = gpu();
  const model = await LlamaModel.create(dir, { backend: g, contextLength: 640, sequences: 4 });
  const before = { graphRows: g.batchGraphRows, byGraph: g.decodeRowsByGraph };
  try {
    g.decodeRowsByGraph = 1;
    g.batchGraphRows = 0;
    const eager = await runSteps(model);
    g.batchGraphRows = 16;
    const replayed = await runSteps(model);
    // and once more, every step now a replay of an already recorded graph
    const again = await runSteps(model);
    for (const [i, rows] of eager.entries()) {
      rows.forEach((want, t) => {
        const e1 = normErr(replayed[i][t], want), e2 = normErr(again[i][t], want);
        assert.ok(e1 < TOL && e2 < TOL, `step ${i} (slots ${STEPS[i].join(',')}) row ${t}: err ${e1} / ${e2}`);
      });
    }
  } finally {
    g.batchGraphRows = before.graphRows;
    g.decodeRowsByGraph = before.byGraph;
  }
});
