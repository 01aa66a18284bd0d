/**
 * `node dist/bench/cudaBatchBench.js MODEL_DIR`: aggregate decode tokens/s of continuous batching on
 * this machine's GPU: B = 1, 2, 3, 4, 8, 16, 32 sequences decoding together through the model's
 * `decodeBatch` (one pass per step; the linears run with rows = B, attention and the KV writes per
 * row: ropeRows / writeKvRows / attentionRows), each sequence at its own context length.
 * For B ≥ 2 the same steps also run as one eager pass (batchGraphRows = 0: not recorded), with the
 * small-batch kernels off (smallBatchMaxRows = 0: the 128-row-tile GEMM), and for B ≤ 3 as one graph replay
 * per row (decodeRowsByGraph = B), so the line shows what the recorded steps, gemv_q4_multi / gemv_q4_rows and
 * batching itself buy. Each figure is also given as a share
 * of the bandwidth ceiling (a read kernel over 2 GiB, measured in the same run): one step must read
 * the weights once plus every sequence's KV cache.
 * Env: QLLAMA_BENCH_BATCH_CTX (mean context per sequence, default 256; the sequences spread over
 * 0.5×..1.5× of it), QLLAMA_BENCH_BATCH_STEPS (timed steps per B, default 16).
 * Ends with one JSON line of every figure, the card named.
 */
import { statSync } from 'node:fs';
import { CudaBackend } from '../src/backends/cuda/cudaBackend.js';
import { ptr, u64 } from '../src/backends/cuda/kernelArgs.js';
import { LlamaModel } from '../src/model/llama.js';
import type { DecodeRow } from '../src/model/batch.js';
import { randomQ4 } from './cudaBenchWeights.js';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: node dist/bench/cudaBatchBench.js MODEL_DIR   (e.g. a folder from `qllama synth --shape llama-13b --out DIR`)');
  process.exit(2);
}
const BATCHES = [1, 2, 3, 4, 8, 16, 32];
const MEAN_CTX = Number(process.env.QLLAMA_BENCH_BATCH_CTX ?? 256);
const STEPS = Number(process.env.QLLAMA_BENCH_BATCH_STEPS ?? 16);
const maxB = BATCHES[BATCHES.length - 1];

const b = CudaBackend.create();
const cu = b.cu;

// the ceiling: one read of 2 GiB with 16-byte loads (as bench/cudaBench.ts)
const ceilingGBs = ((): number => {
  const bytes = 2 ** 31;
  const buf = b.mem.alloc(bytes), sink = b.mem.alloc(4 * b.smCount * 8 * 256);
  cu.memsetD32(buf, 0x12345678, bytes / 4, b.stream);
  const read = (): void => b.kernels.launch('read_bw', { x: b.smCount * 8 }, { x: 256 }, [ptr(buf), u64(bytes / 16), ptr(sink)]);
  read();
  b.synchronize();
  const t = performance.now();
  for (let i = 0; i < 10; i++) read();
  b.synchronize();
  const gbs = (10 * bytes) / ((performance.now() - t) / 1000) / 1e9;
  b.mem.free(buf);
  b.mem.free(sink);
  return gbs;
})();
console.log(`${b.deviceName}: read ceiling ${ceilingGBs.toFixed(0)} GB/s`);

// the linears alone at LLaMA-13B shapes (act-order q4 g128), rows = B: µs per call and share of the ceiling
// (enough copies of each matrix that one round exceeds L2); events on the stream
const [e0, e1] = [cu.createEvent(), cu.createEvent()];
const linears: Record<string, unknown>[] = [];
for (const [name, K, N] of [['o', 5120, 5120], ['up', 5120, 13824], ['down', 13824, 5120]] as const) {
  const copies = 6;
  const ws = Array.from({ length: copies }, () => b.uploadLinear(randomQ4(K, N, true)));
  const x = b.allocActivation(BATCHES[BATCHES.length - 1], K), y = b.allocActivation(BATCHES[BATCHES.length - 1], N);
  b.writeActivation(x, Float32Array.from({ length: BATCHES[BATCHES.length - 1] * K }, () => Math.random() - 0.5));
  const bytes = (K * N) / 2 + (K / 128) * N * 2.5;
  // (rows = 1 is left out: eager one-row GEMVs wait in the GemvBatch and go out with host gaps; the model runs them as a graph)
  for (const B of BATCHES.filter((r) => r >= 2)) {
    const run = (): void => { for (const w of ws) b.linear(y, x, w, B); };
    run();
    b.synchronize();
    cu.recordEvent(e0, b.stream);
    for (let i = 0; i < 5; i++) run();
    cu.recordEvent(e1, b.stream);
    cu.synchronizeEvent(e1);
    const us = (cu.elapsedMs(e0, e1) * 1000) / (5 * copies);
    const of = bytes / (us * 1e-6) / 1e9 / ceilingGBs;
    linears.push({ name, K, N, B, us: +us.toFixed(1), ofCeiling: +of.toFixed(3) });
    console.log(`linear ${name} ${K}x${N} rows=${String(B).padStart(2)}: ${us.toFixed(1)} us (${(100 * of).toFixed(1)}% of the ceiling)`);
  }
}

// room for the longest prompt and one run's steps (every run starts again from the prompts' ends)
const contextLength = Math.ceil((Math.round(1.5 * MEAN_CTX) + STEPS + 3) / 64) * 64;
const model = await LlamaModel.create(dir, { backend: b, contextLength, sequences: maxB });
const c = model.config;
const weightsGB = statSync(model.info.weightsPath).size / 1e9;
console.log(`${dir}: ${weightsGB.toFixed(2)} GB, ${maxB} sequence slots of ${contextLength} positions`);

// every slot gets a prompt of its own length (0.5×..1.5× the mean), run once through the ordinary path
const vocab = model.vocabSize;
const lengths = Array.from({ length: maxB }, (_, s) => Math.max(1, Math.round(MEAN_CTX * (0.5 + s / Math.max(1, maxB - 1)))));
const next = new Int32Array(maxB);
const pos = new Int32Array(maxB);
for (let s = 0; s < maxB; s++) {
  const prompt = Array.from({ length: lengths[s] }, (_, i) => (i * 7919 + 13 * s + 1) % vocab);
  next[s] = await model.forwardArgmax(prompt, 0, s);
  pos[s] = lengths[s];
}
/** the prompts' ends: every timed run starts there, so each B (and each kernel choice) sees the same contexts */
const promptEnds = pos.slice();

/** bytes one step must read: the weights (less the embedding table: one row each) and each row's KV cache */
function stepBytes(B: number): number {
  let kv = 0;
  for (let s = 0; s < B; s++) kv += (pos[s] + 1) * c.numLayers * 2 * c.numKvHeads * (c.hiddenSize / c.numHeads) * 2;
  return weightsGB * 1e9 - c.vocabSize * c.hiddenSize * 2 + kv;
}

/** One greedy step of slots 0..B-1; each slot's position advances. */
async function step(B: number): Promise<void> {
  const rows: DecodeRow[] = [];
  for (let s = 0; s < B; s++) rows.push({ slot: s, token: next[s], pos: pos[s], pick: { kind: 'argmax' } });
  const ids = await model.decodeBatch(rows);
  for (let s = 0; s < B; s++) {
    const id = ids[s];
    next[s] = typeof id === 'number' ? id : 0;
    pos[s]++;
  }
}

/** Aggregate tokens/s of B sequences over STEPS steps (2 warm-up steps first), and the step time in ms. */
async function timeBatch(B: number): Promise<{ tokS: number; stepMs: number; ofCeiling: number }> {
  pos.set(promptEnds);
  for (let i = 0; i < 2; i++) await step(B);
  b.synchronize();
  const bytes = stepBytes(B);
  const t = performance.now();
  for (let i = 0; i < STEPS; i++) await step(B);
  b.synchronize();
  const stepMs = (performance.now() - t) / STEPS;
  return { tokS: +((1000 * B) / stepMs).toFixed(1), stepMs: +stepMs.toFixed(3), ofCeiling: +((bytes / (stepMs / 1000) / 1e9) / ceilingGBs).toFixed(3) };
}

const defaultMax = b.smallBatchMaxRows, graphRows = b.decodeRowsByGraph, recordRows = b.batchGraphRows;
type Timed = { tokS: number; stepMs: number; ofCeiling: number };
/** timeBatch(B) with a backend switch changed for the run */
async function timeWith(B: number, set: () => void, reset: () => void): Promise<Timed> {
  set();
  try {
    return await timeBatch(B);
  } finally {
    reset();
  }
}
const rows: Record<string, unknown>[] = [];
for (const B of BATCHES) {
  const fast = await timeBatch(B);
  let eager: Timed | null = null, gemm: Timed | null = null, perRow: Timed | null = null;
  if (B >= 2) {
    if (B <= recordRows) eager = await timeWith(B, () => { b.batchGraphRows = 0; }, () => { b.batchGraphRows = recordRows; });
    if (B <= defaultMax) gemm = await timeWith(B, () => { b.smallBatchMaxRows = 0; }, () => { b.smallBatchMaxRows = defaultMax; });
    if (B <= 3) perRow = await timeWith(B, () => { b.decodeRowsByGraph = B; }, () => { b.decodeRowsByGraph = graphRows; });
  }
  rows.push({ B, ...fast, eager, gemm, perRow });
  const how = B <= graphRows ? ' (a graph replay per row)' : B <= recordRows ? ' (a recorded batched step)' : ' (an eager batched pass)';
  console.log(`B=${String(B).padStart(2)}: ${fast.tokS} tok/s aggregate${how} (${fast.stepMs} ms/step, ${(100 * fast.ofCeiling).toFixed(1)}% of the ceiling)` +
    (eager ? `; eager: ${eager.tokS}` : '') +
    (gemm ? `; with the GEMM instead of the small-batch kernels: ${gemm.tokS}` : '') +
    (perRow ? `; a graph replay per row: ${perRow.tokS}` : ''));
}
const single = rows[0] as { tokS: number };
const figures = {
  card: b.deviceName, date: new Date().toISOString().slice(0, 10), model: dir, weightsGB: +weightsGB.toFixed(2),
  ceilingGBs: Math.round(ceilingGBs), linears, meanContext: MEAN_CTX, steps: STEPS, smallBatchMaxRows: defaultMax, multiMaxRows: b.multiMaxRows, decodeRowsByGraph: graphRows, batchGraphRows: recordRows, batches: rows,
  speedupAt: Object.fromEntries(rows.map((r) => [String(r.B), +((r as { tokS: number }).tokS / single.tokS).toFixed(2)])),
};
model.dispose();
console.log(JSON.stringify(figures));
