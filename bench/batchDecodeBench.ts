/**
 * Continuous batching on the CPU backend: aggregate decode tokens/s decoding 1, 2, 4 and 8
 * sequences as one batch (LlamaModel.decodeBatch, each row its own KV cache and position), against
 * one sequence through the ordinary forward. Each sequence is prefilled with a 32-token prompt, then
 * decodes `--steps` tokens from position 32. Models: the embedded tiny-vicuna-4k (4-bit g128
 * act-order, 6 MB: it sits in the CPU caches, so decode is compute-bound), or with `--layers N` a
 * synthetic 4-bit g128 model of LLaMA-7B width with N layers (weights far beyond the caches, so
 * decode is bound by memory reads, the regime batching is for).
 *   node dist/bench/batchDecodeBench.js [--threads N] [--steps N] [--layers N]
 * Prints one JSON line.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { CpuBackend } from '../src/backends/cpu/cpuBackend.js';
import { hostArgmax, type DecodeRow } from '../src/model/batch.js';
import { LlamaModel } from '../src/model/llama.js';
import { SHAPES } from '../src/synth/shapes.js';
import { synthesize } from '../src/synth/synth.js';
import { EMBEDDED_MODEL } from '../test/support/paths.js';

const { values } = parseArgs({ options: { threads: { type: 'string' }, steps: { type: 'string', default: '128' }, layers: { type: 'string' } } });
const threads = values.threads !== undefined ? Number(values.threads) : undefined;
const steps = Number(values.steps);
const SIZES = [1, 2, 4, 8];
const PROMPT = 32;

let dir = EMBEDDED_MODEL, modelName = 'tiny-vicuna-4k gptq-4bit-128g act-order', tmp: string | undefined;
if (values.layers !== undefined) {
  const shape = { ...SHAPES['llama-7b'], layers: Number(values.layers) };
  tmp = mkdtempSync(path.join(tmpdir(), 'qllama-batch-'));
  dir = path.join(tmp, 'model');
  await synthesize({ shape, bits: 4, groupSize: 128, actOrder: false, out: dir });
  modelName = `synthetic llama-7b width, ${shape.layers} layers, gptq-4bit-128g`;
}
const backend = new CpuBackend({ threads });
const model = await LlamaModel.create(dir, { backend, sequences: Math.max(...SIZES), contextLength: PROMPT + steps + 1 });
const prompt = (slot: number): number[] => Array.from({ length: PROMPT }, (_, i) => 1 + ((slot * 97 + i * 31) % 4000));

/** Aggregate tokens/s of `b` sequences decoding `steps` tokens together (best of 3). */
async function batched(b: number): Promise<number> {
  let best = 0;
  for (let round = 0; round < 3; round++) {
    const next: number[] = [];
    for (let s = 0; s < b; s++) next.push(await model.forwardArgmax(prompt(s), 0, s));
    const t0 = performance.now();
    for (let i = 0; i < steps; i++) {
      const rows: DecodeRow[] = next.map((token, slot) => ({ slot, token, pos: PROMPT + i, pick: { kind: 'argmax' } }));
      const out = await model.decodeBatch(rows);
      out.forEach((o, slot) => { next[slot] = typeof o === 'number' ? o : hostArgmax(o); });
    }
    best = Math.max(best, (b * steps) / ((performance.now() - t0) / 1000));
  }
  return best;
}

/** Tokens/s of one sequence through the single-sequence path (forwardArgmax), best of 3. */
async function single(): Promise<number> {
  let best = 0;
  for (let round = 0; round < 3; round++) {
    let next = await model.forwardArgmax(prompt(0), 0);
    const t0 = performance.now();
    for (let i = 0; i < steps; i++) next = await model.forwardArgmax([next], PROMPT + i);
    best = Math.max(best, steps / ((performance.now() - t0) / 1000));
  }
  return best;
}

const r1 = (v: number): number => Math.round(v * 10) / 10;
const solo = await single();
const perBatch: Record<string, number> = {};
for (const b of SIZES) perBatch[`b${b}`] = r1(await batched(b));
model.dispose();
if (tmp !== undefined) rmSync(tmp, { recursive: true, force: true });
process.stdout.write(`${JSON.stringify({
  bench: 'batch-decode', model: modelName, backend: backend.name,
  machine: `${cpus()[0]?.model.trim() ?? 'cpu'}, ${availableParallelism()} cores`, node: process.version,
  prompt: PROMPT, steps, single_tok_s: r1(solo), batched_tok_s: perBatch,
  speedup_b4_vs_single: r1(perBatch.b4 / solo),
})}\n`);
