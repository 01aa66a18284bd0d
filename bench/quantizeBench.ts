/**
 * `npm run bench:quantize`: `qllama quantize` on tiny-vicuna-4k with GPTQ-for-LLaMa's reference
 * recipe (C4 documents 0–899, 128 windows × 512 tokens, seed 0, 4-bit g128, act-order,
 * true-sequential): wall time, peak RSS, and a projected peak for LLaMA-13B at 128 × 2048.
 *
 * Projection: peak(13B) = baseline + model(13B) + residual, where
 *   baseline = RSS of this process before the run (Node, modules),
 *   model(x) = the component-by-component peak working set of src/quantize/memoryModel.ts
 *              (activations, runner and engine buffers, Hessian sums, one layer's weights, GPTQ
 *              on down_proj) for shape x and the recipe (activations f32 or fp16 as `auto` picks),
 *   residual = measured peak − baseline − model(tiny) on this run: what the model does not
 *              account for, carried over unchanged (allocator slack, heap growth, code).
 * Flags: --threads N, --nsamples N, --seqlen N, --activations auto|f32|f16, --no-act-order.
 * Ends with one JSON line of every figure.
 */
import { cpus, availableParallelism } from 'node:os';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { ActivationDtype } from '../src/quantize/activations.js';
import { defaultQuantizeThreads } from '../src/quantize/engine.js';
import { LLAMA_13B, peakWorkingSet, type RecipeSpec } from '../src/quantize/memoryModel.js';
import { quantizeModel } from '../src/quantize/pipeline.js';
import { DATA, FIXTURES } from '../test/support/paths.js';

const { values } = parseArgs({
  options: {
    threads: { type: 'string' },
    nsamples: { type: 'string', default: '128' },
    seqlen: { type: 'string', default: '512' },
    activations: { type: 'string', default: 'auto' },
    'no-act-order': { type: 'boolean', default: false },
  },
});
const threads = values.threads ? Number(values.threads) : defaultQuantizeThreads();
const nsamples = Number(values.nsamples);
const seqlen = Number(values.seqlen);
const activations = values.activations as ActivationDtype | 'auto';
const actOrder = !values['no-act-order'];

const log = (line: string): void => { process.stdout.write(`${line}\n`); };
const mb = (b: number): number => Math.round(b / 1024 ** 2);
const gb = (b: number): number => Math.round((b / 1024 ** 3) * 100) / 100;
const rssNow = (): number => process.memoryUsage.rss();
const peakRss = (): number => process.resourceUsage().maxRSS * 1024;

const fp16 = path.join(FIXTURES, 'tiny-vicuna-4k', 'fp16');
const c4 = path.join(DATA, 'c4', 'c4_sample.jsonl');
const tiny = { dim: 256, kvDim: 256, ffn: 768, vocab: 4096 };
const recipe: RecipeSpec = { nsamples, seqlen, trueSequential: true, actOrder, threads, activations };

const out = path.join(mkdtempSync(path.join(tmpdir(), 'qllama-quantize-bench-')), 'out');
const baseline = rssNow();
let layerTimes: number[] = [];
try {
  let layerStart = Date.now();
  let lastLayer = -1;
  const started = Date.now();
  const result = await quantizeModel({
    modelDir: fp16, outDir: out, name: 'tiny-vicuna-4k', threads, activations,
    settings: { bits: 4, groupSize: 128, actOrder, staticGroups: false, sym: false, damp: 0.01 },
    trueSequential: true, rtn: false,
    calibration: { file: c4, docs: { start: 0, end: 900 }, nsamples, seqlen, seed: 0 },
    onProgress: (p) => {
      if (p.layer !== lastLayer) {
        if (lastLayer >= 0) layerTimes.push((Date.now() - layerStart) / 1000);
        lastLayer = p.layer;
        layerStart = Date.now();
      }
    },
  });
  layerTimes.push((Date.now() - layerStart) / 1000);
  layerTimes = layerTimes.map((t) => Math.round(t * 100) / 100);
  const seconds = (Date.now() - started) / 1000;
  const peak = peakRss();
  const modelTiny = peakWorkingSet(tiny, recipe);
  const residual = peak - baseline - modelTiny.total;
  const recipe13 = { ...recipe, seqlen: 2048, nsamples: 128 };
  const model13 = peakWorkingSet(LLAMA_13B, recipe13);
  const projected = baseline + model13.total + Math.max(0, residual);

  log(`qllama quantize tiny-vicuna-4k, ${nsamples} × ${seqlen} C4 windows, 4-bit g128${actOrder ? ' act-order' : ''} true-sequential, ${threads} thread(s)`);
  log(`machine: ${cpus()[0]?.model.trim() ?? 'cpu'}, ${availableParallelism()} cores, Node ${process.version}`);
  log(`time: ${seconds.toFixed(1)} s (layers: ${layerTimes.join(', ')} s)`);
  log(`RSS: baseline ${mb(baseline)} MiB, peak ${mb(peak)} MiB, working set ${mb(peak - baseline)} MiB (model ${mb(modelTiny.total)} MiB, residual ${mb(residual)} MiB)`);
  log(`projected LLaMA-13B peak at 128 × 2048 (${threads} threads): ${gb(projected)} GiB`);
  for (const [k, v] of Object.entries(model13)) if (k !== 'total') log(`  ${k.padEnd(13)} ${gb(v).toFixed(2)} GiB`);
  log(JSON.stringify({
    bench: 'quantize', model: 'tiny-vicuna-4k', nsamples, seqlen, actOrder, threads, activations,
    machine: `${cpus()[0]?.model.trim() ?? 'cpu'}, ${availableParallelism()} cores`, node: process.version, date: new Date().toISOString().slice(0, 10),
    seconds: Math.round(seconds * 10) / 10, quantize_seconds: Math.round(result.seconds * 10) / 10, layer_seconds: layerTimes,
    baseline_rss_mib: mb(baseline), peak_rss_mib: mb(peak), working_set_mib: mb(peak - baseline), model_tiny_mib: mb(modelTiny.total), residual_mib: mb(residual),
    projected_13b_peak_gib: gb(projected), projected_13b_parts_gib: Object.fromEntries(Object.entries(model13).map(([k, v]) => [k, gb(v)])),
  }));
} finally {
  rmSync(path.dirname(out), { recursive: true, force: true });
}
