/**
 * End to end: `quantizeModel` with backend cuda on tiny-vicuna-4k fp16 (C4 calibration, 4-bit g128,
 * act-order, true-sequential) writes the same file layout as the CPU path, and its WikiText-2
 * perplexity is within 0.5% of the CPU path's on the same calibration. Skipped without a GPU; on
 * the GPU machine the fixtures come from quantizeSupport.ts's sharedRoot() (carry them there).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { readDatasetText } from '../../src/eval/datasetText.js';
import { perplexity } from '../../src/eval/perplexity.js';
import { assertSameTensorLayout } from '../support/tensorLayout.js';
import { LlamaModel } from '../../src/model/llama.js';
import { quantizeModel, type QuantizeModelOptions } from '../../src/quantize/pipeline.js';
import { Tokenizer } from '../../src/tokenizer/index.js';
import { skipNoGpu } from './support.js';
import { sharedRoot } from './quantizeSupport.js';

async function wikiPpl(dir: string, wiki: string): Promise<number> {
  const model = await LlamaModel.create(dir, { contextLength: 256 });
  try {
    const tokenizer = await Tokenizer.fromModelDir(dir);
    const ids = tokenizer.encode(readDatasetText(wiki), { addBos: true, parseSpecial: false });
    return (await perplexity(model, ids, 256, { maxWindows: 40 })).ppl;
  } finally {
    model.dispose();
  }
}

test('quantize tiny-vicuna-4k with --backend cuda: the CPU path\'s layout, perplexity within 0.5%', { skip: skipNoGpu }, async () => {
  const root = sharedRoot();
  const fp16 = path.join(root, 'fixtures', 'tiny-vicuna-4k', 'fp16');
  const c4 = path.join(root, 'data', 'c4', 'c4_sample.jsonl');
  const wiki = path.join(root, 'data', 'wikitext-2', 'wikitext2_test_gptq_join_lf.txt');
  const work = mkdtempSync(path.join(tmpdir(), 'qllama-quantize-cuda-'));
  try {
    const base: Omit<QuantizeModelOptions, 'outDir'> = {
      modelDir: fp16, name: 'tiny-vicuna-4k', trueSequential: true, rtn: false,
      settings: { bits: 4, groupSize: 128, actOrder: true, staticGroups: false, sym: false, damp: 0.01 },
      calibration: { file: c4, docs: { start: 0, end: 900 }, nsamples: 16, seqlen: 256, seed: 0 },
    };
    const cpu = await quantizeModel({ ...base, outDir: path.join(work, 'cpu'), backend: 'cpu' });
    const gpu = await quantizeModel({ ...base, outDir: path.join(work, 'cuda'), backend: 'cuda' });
    assert.deepEqual(readdirSync(gpu.outDir).sort(), readdirSync(cpu.outDir).sort());
    assertSameTensorLayout(gpu.file, cpu.file);
    for (const [k, v] of Object.entries(cpu.losses)) {
      assert.ok(Math.abs(gpu.losses[k] - v) <= 0.05 * v + 1e-9, `${k}: GPTQ loss cuda ${gpu.losses[k]} vs cpu ${v}`);
    }
    const pCpu = await wikiPpl(cpu.outDir, wiki);
    const pGpu = await wikiPpl(gpu.outDir, wiki);
    const rel = Math.abs(pGpu - pCpu) / pCpu;
    console.log(`quantized in ${cpu.seconds.toFixed(1)} s (cpu), ${gpu.seconds.toFixed(1)} s (cuda); wikitext2 ppl cuda ${pGpu.toFixed(4)} vs cpu ${pCpu.toFixed(4)} (${(rel * 100).toFixed(3)}%)`);
    assert.ok(rel < 0.005, `ppl ${pGpu} (cuda) differs from ${pCpu} (cpu) by more than 0.5%`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});

test('--backend cuda keeps --resume: a run stopped after layer 1 finishes with the same file', { skip: skipNoGpu }, async () => {
  const root = sharedRoot();
  const fp16 = path.join(root, 'fixtures', 'tiny-vicuna-4k', 'fp16');
  const c4 = path.join(root, 'data', 'c4', 'c4_sample.jsonl');
  const work = mkdtempSync(path.join(tmpdir(), 'qllama-quantize-cuda-resume-'));
  try {
    const base: QuantizeModelOptions = {
      modelDir: fp16, outDir: path.join(work, 'out'), name: 'tiny-vicuna-4k', trueSequential: false, rtn: false, backend: 'cuda',
      activations: 'f32', settings: { bits: 4, groupSize: 128, actOrder: false, staticGroups: false, sym: false, damp: 0.01 },
      calibration: { file: c4, docs: { start: 0, end: 900 }, nsamples: 8, seqlen: 128, seed: 1 },
    };
    const stop = new Error('stop after layer 1');
    await assert.rejects(quantizeModel({ ...base, onProgress: (p) => { if (p.layer === 2) throw stop; } }), (e) => e === stop);
    const resumed = await quantizeModel({ ...base, resume: true });
    const whole = await quantizeModel({ ...base, outDir: path.join(work, 'whole') });
    for (const key of Object.keys(whole.losses).filter((k) => /layers\.[23]\./.test(k))) {
      assert.ok(Math.abs(resumed.losses[key] - whole.losses[key]) <= 1e-3 * whole.losses[key] + 1e-9, `${key}: resumed ${resumed.losses[key]} vs whole ${whole.losses[key]}`);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
