/**
 * `npm run bench:cuda [-- MODEL_DIR...]`: CUDA figures on this machine's GPU, each beside the
 * bandwidth ceiling measured in the same run.
 *   1. ceiling: a read kernel over 2 GiB (16-byte loads)
 *   2. int4 GEMV at LLaMA-13B shapes (compat and act-order), GB/s and ratio to the ceiling
 *   3. per model dir (e.g. from `qllama synth`): load time, prefill tok/s, decode tok/s at
 *      context 1/512/2048 (graph replay, argmax on the device), peak GPU memory
 *   4. the prefill ceiling cuBLAS sets: the first model's four prompt linears per layer as PyTorch fp16 GEMMs at 2048
 *      rows, sustained for 4 s (bench/cublasPrefill.py; where python3 has torch), with the SM clock and power of both
 *      (gpuSampler.ts): a long prompt runs at the card's power limit, where the clock sets the rate
 *   5. ExLlamaV2 on the first model dir, in the same call (bench/peerExllamav2.ts), and ours / its ratios
 * Ends with one JSON line of every figure.
 * Env: QLLAMA_BENCH_PEER=0 (no ExLlamaV2 run), QLLAMA_BENCH_PREFILL_ONLY=1 (load + prefill only), QLLAMA_BENCH_PREFILL_OLD=1 (also the previous prefill
 * kernels, same process), QLLAMA_BENCH_CHUNK_ROWS (prompt rows per forward pass, default 512).
 */
import { CudaBackend } from '../src/backends/cuda/cudaBackend.js';
import { ptr, u64 } from '../src/backends/cuda/kernelArgs.js';
import { randomQ4 } from './cudaBenchWeights.js';
import { benchModel, type ModelFigures } from './cudaBenchModel.js';
import { runPeer, type PeerFigures } from './peerExllamav2.js';
import { runCublasPrefill } from './cublasPrefill.js';
import { GpuSampler } from './gpuSampler.js';

const b = CudaBackend.create();
const sampler = new GpuSampler();
const figures: Record<string, unknown> = { card: b.deviceName, date: new Date().toISOString().slice(0, 10) };
const cu = b.cu;
const [e0, e1] = [cu.createEvent(), cu.createEvent()];

/** Median over `rounds` of the mean time of `reps` calls of `fn`, in ms (events on the stream). */
function timeMs(fn: () => void, reps: number, rounds = 5): number {
  fn();
  b.synchronize();
  const t: number[] = [];
  for (let r = 0; r < rounds; r++) {
    cu.recordEvent(e0, b.stream);
    for (let i = 0; i < reps; i++) fn();
    cu.recordEvent(e1, b.stream);
    cu.synchronizeEvent(e1);
    t.push(cu.elapsedMs(e0, e1) / reps);
  }
  return t.sort((a, c) => a - c)[Math.floor(t.length / 2)];
}

// 1. the ceiling
const bytes = 2 ** 31;
const buf = b.mem.alloc(bytes);
cu.memsetD32(buf, 0x12345678, bytes / 4, b.stream);
const sink = b.mem.alloc(4 * b.smCount * 8 * 256);
const ceilMs = timeMs(() => b.kernels.launch('read_bw', { x: b.smCount * 8 }, { x: 256 }, [ptr(buf), u64(bytes / 16), ptr(sink)]), 10);
const ceiling = bytes / ceilMs / 1e6; // GB/s
b.mem.free(buf);
figures.ceilingGBs = Math.round(ceiling);
console.log(`${b.deviceName}: read ceiling ${ceiling.toFixed(0)} GB/s (2 GiB, 16-byte loads)`);

// 2. GEMV at 13B shapes; enough copies that the set exceeds L2, replayed as one graph. The fused rows
// are one launch over several matrices that share x (q/k/v; gate/up with SwiGLU in the epilogue).
const gemv: Record<string, unknown>[] = [];
// epilogue: what the model folds into the launch (swiglu: gate/up; rope-kv: rotary on q and k and the
// fp16 KV-cache write of k and v; residual-norm: y += W·x, then the next layer's RMSNorm of y, which
// the last block of the launch computes)
const cases = [
  { name: 'o', K: 5120, N: 5120, mats: 1, epilogue: 'none' },
  { name: 'up', K: 5120, N: 13824, mats: 1, epilogue: 'none' },
  { name: 'down', K: 13824, N: 5120, mats: 1, epilogue: 'none' },
  { name: 'qkv fused', K: 5120, N: 5120, mats: 3, epilogue: 'none' },
  { name: 'gate/up+swiglu', K: 5120, N: 13824, mats: 2, epilogue: 'swiglu' },
  { name: 'qkv+rope+kv', K: 5120, N: 5120, mats: 3, epilogue: 'rope-kv' },
  { name: 'o+add+norm', K: 5120, N: 5120, mats: 1, epilogue: 'residual-norm' },
  { name: 'down+add+norm', K: 13824, N: 5120, mats: 1, epilogue: 'residual-norm' },
] as const;
// QLLAMA_BENCH_PREFILL_ONLY=1 skips this section and the decode runs
const gemvRuns = process.env.QLLAMA_BENCH_PREFILL_ONLY === '1' ? [] : [false, true];
for (const actOrder of gemvRuns) {
  const kv = b.allocKvCache(1, 2048, 40, 128);
  const normW = b.uploadVector(Float32Array.from({ length: 5120 }, () => 1 + 0.1 * Math.random()));
  for (const { name, K, N, mats, epilogue } of cases) {
    const copies = Math.max(4, Math.ceil(256e6 / (mats * K * N / 2)));
    const layers = Array.from({ length: copies }, () => Array.from({ length: mats }, () => b.uploadLinear(randomQ4(K, N, actOrder))));
    const x = b.allocActivation(1, K);
    const ys = Array.from({ length: mats + 1 }, () => b.allocActivation(1, N));
    b.writeActivation(x, Float32Array.from({ length: K }, () => Math.random() - 0.5));
    const setBytes = mats * ((K * N) / 2 + (K / 128) * N * 2 + (K / 128) * N / 8 * 4);
    const key = `gemv-${name}-${actOrder}`;
    const ms = timeMs(() => b.runGraph(key, { startPos: 0, ids: new Int32Array(1) }, () => {
      for (const l of layers) {
        if (epilogue === 'residual-norm') {
          b.linearAdd(ys[0], x, l[0], 1);
          b.rmsNorm(ys[1], ys[0], normW, 1e-6, 1);
          continue;
        }
        l.forEach((w, i) => b.linear(ys[i], x, w, 1));
        if (epilogue === 'swiglu') b.swiglu(ys[mats], ys[0], ys[1], 1);
        if (epilogue === 'rope-kv') {
          b.rope(ys[0], 40, 128, 0, 10000, 1);
          b.rope(ys[1], 40, 128, 0, 10000, 1);
          b.writeKv(kv, 0, 0, ys[1], ys[2], 1);
        }
      }
    }), 20) / copies;
    const gbs = setBytes / ms / 1e6;
    gemv.push({ name, K, N, mats, actOrder, us: +(ms * 1000).toFixed(2), GBs: Math.round(gbs), ofCeiling: +(gbs / ceiling).toFixed(3) });
    console.log(`gemv q4 g128 ${actOrder ? 'act-order' : 'compat   '} ${name.padEnd(15)} ${mats}x ${K}x${N}: ${(ms * 1000).toFixed(2)} us, ${gbs.toFixed(0)} GB/s = ${(100 * gbs / ceiling).toFixed(1)}% of ceiling`);
  }
}
figures.gemv = gemv;

// 3. whole models, then ExLlamaV2 on the first model dir in this same call (where its source was fetched
//    into .peer/exllamav2; QLLAMA_BENCH_PEER=0 skips it). Without it, the ratios are against the H100 figures
//    of ../shared/gpu/README.md, and say so.
const models: ModelFigures[] = [];
for (const dir of process.argv.slice(2)) models.push(await benchModel(dir, ceiling, (line) => console.log(line), sampler));
figures.models = models;
if (models.length === 2 && models[0].decode[1] !== undefined) {
  figures.actOrderVsCompat = +(models[1].decode[1] / models[0].decode[1]).toFixed(3);
  console.log(`act-order / compat decode at context 1: ${figures.actOrderVsCompat}`);
}
b.dispose(); // the peer gets the card to itself
if (models.length > 0) {
  const cublas = runCublasPrefill(models[0].shape, 2048);
  if (typeof cublas === 'string') console.log(cublas);
  else {
    figures.cublasPrefill = cublas;
    const ours = models[0].prefill[2048];
    console.log(`cuBLAS (PyTorch fp16) at ${models[0].dir}'s prompt linears, 2048 rows, sustained ${cublas.seconds} s: ${cublas.msPerLayer} ms per layer, ` +
      `${cublas.tflops} TFLOP/s (${cublas.clocks}); the linears alone would run a 2048-token prompt at ${cublas.linearsOnlyTokS} tok/s, ` +
      `ours (everything) ${ours} = ${(ours / cublas.linearsOnlyTokS).toFixed(3)}x of that`);
  }
}
sampler.stop();
const REFERENCE: PeerFigures = {
  name: 'ExLlamaV2 on an H100 (shared/gpu/README.md, not measured in this call)', decodeShort: 147, decode2048: 141, decode2048At: 2048, prefill2048: 16224,
};
let peer = REFERENCE;
if (models.length > 0 && process.env.QLLAMA_BENCH_PEER !== '0') {
  const measured = runPeer(models[0].dir, (line) => console.log(line));
  if (typeof measured === 'string') console.log(measured);
  else peer = measured;
}
figures.peer = peer;
for (const m of models) {
  const decodeVs = m.decode[1] === undefined ? '' :
    `decode ctx 1 ${(m.decode[1] / peer.decodeShort).toFixed(2)}x, ctx 2048 ${(m.decode[2048] / peer.decode2048).toFixed(2)}x (peer at ${peer.decode2048At}), `;
  const prefill512 = peer.prefill512 === undefined || m.prefill[512] === undefined ? '' : `, prefill 512 ${(m.prefill[512] / peer.prefill512).toFixed(3)}x`;
  console.log(`${m.dir} vs ${peer.name}: ${decodeVs}prefill 2048 ${(m.prefill[2048] / peer.prefill2048).toFixed(3)}x${prefill512}`);
}
console.log(JSON.stringify(figures));
