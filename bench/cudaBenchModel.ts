/**
 * Whole-model CUDA figures for one model folder: load time, prefill tokens/s, greedy decode
 * tokens/s at context 1, 512 and 2048 (the model's graph-replayed decode step, argmax on the
 * device), peak GPU memory, and decode as a share of the bandwidth ceiling.
 */
import { statSync } from 'node:fs';
import { CudaBackend } from '../src/backends/cuda/cudaBackend.js';
import { LlamaModel } from '../src/model/llama.js';
import { describeClocks, type GpuSampler, type PhaseClocks } from './gpuSampler.js';

export interface ModelFigures {
  readonly dir: string;
  readonly chunkRows: number;
  readonly loadS: number;
  /** of loadS, seconds inside the backend's upload calls (copies, act-order repack) */
  readonly uploadS: number;
  readonly weightsGB: number;
  readonly prefill: Record<string, number>;
  /** SM clock and power while each prefill length ran (gpuSampler.ts; null: no samples) */
  readonly prefillClocks: Record<string, PhaseClocks | null>;
  /** hidden size, MLP width and layers: the shapes of its prompt linears (cudaBench's cuBLAS ceiling) */
  readonly shape: { readonly hidden: number; readonly ffn: number; readonly layers: number };
  /** prefill with the older kernels (wmma GEMM, looped decode attention), same run; only with QLLAMA_BENCH_PREFILL_OLD=1 */
  readonly prefillOld: Record<string, number>;
  readonly decode: Record<string, number>;
  readonly decodeOfCeiling: Record<string, number>;
  readonly peakAllocGB: number;
  readonly usedGB: number;
}

export async function benchModel(dir: string, ceilingGBs: number, log: (l: string) => void, sampler?: GpuSampler): Promise<ModelFigures> {
  const backend = CudaBackend.create();
  const t0 = performance.now();
  // prompt rows per forward pass (QLLAMA_BENCH_CHUNK_ROWS; default: the backend's preferredChunkRows)
  const chunkRows = process.env.QLLAMA_BENCH_CHUNK_ROWS ? Number(process.env.QLLAMA_BENCH_CHUNK_ROWS) : backend.preferredChunkRows;
  const model = await LlamaModel.create(dir, { backend, contextLength: 2048, chunkRows });
  backend.synchronize();
  const loadS = (performance.now() - t0) / 1000;
  const uploadS = backend.uploadSeconds;
  const weightsGB = statSync(model.info.weightsPath).size / 1e9;
  log(`${dir}: loaded ${weightsGB.toFixed(2)} GB in ${loadS.toFixed(2)} s (${uploadS.toFixed(2)} s inside the backend's uploads, the rest reading and parsing)`);
  const vocab = model.vocabSize;
  const prompt = (n: number): number[] => Array.from({ length: n }, (_, i) => (i * 7919 + 13) % vocab);
  // as ExLlamaV2's test_inference.py -ps measures it: the mean of PREFILL_RUNS prompts of each length, after
  // one of the same length (so every scratch buffer already has its size: growing one synchronizes)
  const PREFILL_RUNS = 3;
  const timePrefill = async (label: string): Promise<{ rates: Record<string, number>; clocks: Record<string, PhaseClocks | null> }> => {
    const rates: Record<string, number> = {}, clocks: Record<string, PhaseClocks | null> = {};
    for (const n of [512, 2048]) {
      await model.forward(prompt(n), 0); // warm
      const t = performance.now(), wall0 = Date.now();
      for (let i = 0; i < PREFILL_RUNS; i++) await model.forward(prompt(n), 0);
      rates[n] = Math.round(n / ((performance.now() - t) / 1000 / PREFILL_RUNS));
      clocks[n] = sampler ? await sampler.phase(wall0, Date.now()) : null;
      log(`  prefill ${n}${label}: ${rates[n]} tok/s (mean of ${PREFILL_RUNS} after one untimed; ${describeClocks(clocks[n])})`);
    }
    return { rates, clocks };
  };
  const { rates: prefill, clocks: prefillClocks } = await timePrefill('');
  const prefillOld: Record<string, number> = {};
  if (process.env.QLLAMA_BENCH_PREFILL_OLD === '1') {
    const before = backend.prefillKernels;
    backend.prefillKernels = 'old';
    Object.assign(prefillOld, (await timePrefill(' (old kernels: wmma GEMM, looped decode attention)')).rates);
    backend.prefillKernels = before;
  }
  // QLLAMA_BENCH_PREFILL_ONLY=1: load and prefill only
  const decodeContexts = process.env.QLLAMA_BENCH_PREFILL_ONLY === '1' ? [] : [1, 512, 2048];
  const decode: Record<string, number> = {};
  const decodeOfCeiling: Record<string, number> = {};
  // bytes a decode step must read: the weights file (minus the embedding table, read one row) + KV
  const c = model.config;
  const stepBytes = (ctx: number): number => weightsGB * 1e9 - c.vocabSize * c.hiddenSize * 2 + ctx * c.numLayers * 2 * c.hiddenSize * 2;
  for (const ctx of decodeContexts) {
    const start = ctx === 1 ? 0 : ctx - 33;
    if (start > 0) await model.forward(prompt(start), 0);
    let id = 1;
    const steps = 32;
    for (let i = 0; i < 2; i++) id = await greedy(model, id, start + i); // capture + warm
    const t = performance.now();
    for (let i = 2; i < steps; i++) id = await greedy(model, id, start + i);
    const s = (performance.now() - t) / 1000;
    decode[ctx] = +((steps - 2) / s).toFixed(1);
    decodeOfCeiling[ctx] = +((decode[ctx] * stepBytes(ctx)) / (ceilingGBs * 1e9)).toFixed(3);
    log(`  decode at context ${ctx}: ${decode[ctx]} tok/s (${(100 * decodeOfCeiling[ctx]).toFixed(1)}% of the ceiling)`);
  }
  const { free, total } = backend.cu.memInfo();
  const fig: ModelFigures = {
    dir, chunkRows, loadS: +loadS.toFixed(2), uploadS: +uploadS.toFixed(2), weightsGB: +weightsGB.toFixed(2), prefill, prefillClocks,
    shape: { hidden: c.hiddenSize, ffn: c.intermediateSize, layers: c.numLayers }, prefillOld, decode, decodeOfCeiling,
    peakAllocGB: +(backend.mem.peak / 1e9).toFixed(2), usedGB: +((total - free) / 1e9).toFixed(2),
  };
  log(`  peak allocated ${fig.peakAllocGB} GB, in use on the card ${fig.usedGB} GB`);
  model.dispose();
  return fig;
}

/** One greedy step through the model's public path: argmax on the device, only the id comes back. */
async function greedy(model: LlamaModel, id: number, pos: number): Promise<number> {
  return model.forwardArgmax([id], pos);
}
