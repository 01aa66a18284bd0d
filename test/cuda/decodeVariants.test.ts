/**
 * The decode step's speed switches must not change what it computes: the permuted-x copies
 * ($QLLAMA_CUDA_PERMX) feed an act-order GEMV the same values in the order it would gather them, and
 * the norm weight kept in an act-order GEMV's row order ($QLLAMA_CUDA_NORM_PERM) is the weight it would
 * gather, and the cluster launches of q/k/v and gate/up ($QLLAMA_CUDA_CLUSTER, sm_90) add the same split-K sums
 * as the workspace and ticket, and attention folded into the q/k/v launch over a short cache ($QLLAMA_CUDA_FOLD_ATTN)
 * is the attention kernel's. Each way, through the captured decode graph:
 *   - the embedded tiny-vicuna (act-order, head size 64: rope and the KV write run as kernels of their
 *     own) decodes greedily to the same ids;
 *   - a small synthetic LLaMA with head size 128 (rope and the KV write fold into the q/k/v GEMV as in
 *     7B-65B), compat and act-order, gives the same logits on a fixed token sequence (random weights
 *     leave near-ties, so ids are not compared there). Its prompt is long enough that decode attention
 *     merges two blocks (the path that writes o_proj's permuted input from the merge). Width 512 is one
 *     K range per GEMV tile; width 2048 splits q/k/v and gate/up into 4 ranges (clusters of 4 and 8). At width
 *     2048 also with grouped-query attention (4 KV heads for 16 query heads), whose attention folds as well
 *     (FOLD_GROUPED_HEADS: each k or v tile serves its group's query heads).
 * Logits agree up to float-atomic order in the split-K sums (which can move one int8 rounding of x).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { LlamaModel } from '../../src/model/llama.js';
import { FOLD_GROUPED_HEADS } from '../../src/backends/cuda/gemvBatch.js';
import { synthesize } from '../../src/synth/synth.js';
import { EMBEDDED_MODEL } from '../support/paths.js';
import { gpu, normErr, skipNoGpu } from './support.js';

const SHAPE = { hidden: 512, ffn: 1408, layers: 3, heads: 4, vocab: 4096 };
const WIDE = { hidden: 2048, ffn: 5504, layers: 2, heads: 16, vocab: 4096 };
const GQA = { ...WIDE, kvHeads: 4 };
const work = mkdtempSync(path.join(tmpdir(), 'qllama-decode-variants-'));
after(() => rmSync(work, { recursive: true, force: true }));

/** name, permuted x, norm weights in row order, cluster launches (where the GPU has them), attention folded into q/k/v */
const variants: [string, boolean, boolean, boolean, boolean][] = [
  ['all off', false, false, false, false], ['clusters', false, false, true, false], ['permuted x', true, false, true, false],
  ['folded attention, no clusters', true, true, false, true], ['all on', true, true, true, true],
];

const TOL = 2e-3;

/** Runs `steps` decode steps after `prompt` under each variant; `next` picks the following token. */
async function underEachVariant(model: LlamaModel, prompt: number[], steps: number, next: (logits: Float32Array, i: number) => number):
  Promise<{ name: string; ids: number[]; logits: Float32Array[]; folds: number }[]> {
  const g = gpu();
  const before = g.gemvPermuteX, beforeNorms = g.gemvPermutedNorms, beforeClusters = g.gemvClusters, beforeFold = g.foldAttention;
  const out: { name: string; ids: number[]; logits: Float32Array[]; folds: number }[] = [];
  try {
    for (const [name, permX, permNorms, clusters, fold] of variants) {
      g.gemvPermuteX = permX;
      g.foldAttention = fold;
      g.gemvPermutedNorms = permNorms;
      g.gemvClusters = clusters;
      const ids: number[] = [], logits: Float32Array[] = [];
      const folds = g.attentionFolds;
      let l = await model.forward(prompt, 0);
      for (let i = 0; i < steps; i++) {
        ids.push(next(l, i));
        l = await model.forward([ids[i]], prompt.length + i);
        logits.push(l);
      }
      out.push({ name, ids, logits, folds: g.attentionFolds - folds });
    }
  } finally {
    g.gemvPermuteX = before;
    g.gemvPermutedNorms = beforeNorms;
    g.gemvClusters = beforeClusters;
    g.foldAttention = beforeFold;
  }
  return out;
}

function argmax(x: Float32Array): number {
  let best = 0;
  for (let j = 1; j < x.length; j++) if (x[j] > x[best]) best = j;
  return best;
}

/** Attention folds into q/k/v in the variants that ask for it where the head size is 128 (and grouped heads fold), nowhere else. */
function assertFolds(runs: { name: string; folds: number }[], folds: boolean): void {
  runs.forEach((r, i) => assert.equal(r.folds > 0, variants[i][4] && folds, `${r.name}: ${r.folds} attentions folded`));
}

function assertLogitsAgree(runs: { name: string; logits: Float32Array[] }[], what: string): void {
  const [base, ...rest] = runs;
  for (const r of rest) {
    r.logits.forEach((x, i) => {
      const err = normErr(x, base.logits[i]);
      assert.ok(err < TOL, `${what}, ${r.name} vs ${base.name}: step ${i} logits err ${err}`);
    });
  }
}

test('tiny-vicuna (act-order): greedy ids identical under each decode switch', { skip: skipNoGpu }, async () => {
  const model = await LlamaModel.create(EMBEDDED_MODEL, { backend: gpu(), contextLength: 256 });
  const prompt = [1, 319, 13563, 1546, 263, 12758, 5199, 322, 385, 23116].map((t) => t % 4096);
  const runs = await underEachVariant(model, prompt, 24, (l) => argmax(l));
  for (const r of runs.slice(1)) assert.deepEqual(r.ids, runs[0].ids, `${r.name}: greedy ids`);
  assertLogitsAgree(runs, 'tiny-vicuna');
  assertFolds(runs, false);
});

for (const [actOrder, shape] of [[false, SHAPE], [true, SHAPE], [false, WIDE], [true, WIDE], [false, GQA], [true, GQA]] as const) {
  const kvHeads = 'kvHeads' in shape ? shape.kvHeads : shape.heads;
  const heads = kvHeads < shape.heads ? `, ${kvHeads} KV heads for ${shape.heads}` : '';
  test(`synthetic ${actOrder ? 'act-order' : 'compat'} model, width ${shape.hidden}${heads}, head size 128: same logits under each decode switch`, { skip: skipNoGpu }, async () => {
    const dir = path.join(work, `${actOrder ? 'ao' : 'compat'}-${shape.hidden}-${kvHeads}`);
    await synthesize({ shape, bits: 4, groupSize: 128, actOrder, out: dir, seed: 3 });
    const model = await LlamaModel.create(dir, { backend: gpu(), contextLength: 256 });
    const prompt = Array.from({ length: 90 }, (_, i) => (i * 7919 + 13) % shape.vocab);
    const runs = await underEachVariant(model, prompt, 12, (_l, i) => (i * 104729 + 7) % shape.vocab);
    assertLogitsAgree(runs, `synthetic ${actOrder ? 'act-order' : 'compat'} width ${shape.hidden}${heads}`);
    assertFolds(runs, kvHeads === shape.heads || FOLD_GROUPED_HEADS);
  });
}
