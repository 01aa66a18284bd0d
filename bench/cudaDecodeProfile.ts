/**
 * `node dist/bench/cudaDecodeProfile.js MODEL_DIR [CONTEXT]`: a model's decode loop and nothing else,
 * for a profiler on the GPU machine, e.g.
 *   nsys profile --cuda-graph-trace=node -o /tmp/decode node dist/bench/cudaDecodeProfile.js /tmp/m13 1
 *   nsys stats --report cuda_gpu_kern_sum /tmp/decode.nsys-rep
 * Loads the model, fills the KV cache to CONTEXT (default 1) with one prefill, then runs 64 greedy
 * decode steps through the captured graph (as generation does) and prints their rate.
 * --skip-attention: attention replaced by a copy of q (wrong tokens, right shapes), so the difference
 * between the two rates is what attention costs inside the decode graph.
 */
import { CudaBackend } from '../src/backends/cuda/cudaBackend.js';
import { LlamaModel } from '../src/model/llama.js';

const args = process.argv.slice(2).filter((a) => a !== '--skip-attention');
const skipAttention = process.argv.includes('--skip-attention');
const [dir, ctxArg] = args;
if (!dir) {
  process.stderr.write('usage: cudaDecodeProfile MODEL_DIR [CONTEXT]\n');
  process.exit(2);
}
const context = Math.max(1, Number(ctxArg ?? 1));
const backend = CudaBackend.create();
if (skipAttention) backend.attention = (out, q, _cache, _shape, rows): void => backend.copyRows(out, q, 0, rows);
const model = await LlamaModel.create(dir, { backend, contextLength: 2048 });
const steps = 64;
const start = Math.min(context - 1, 2048 - steps - 1);
if (start > 0) await model.forward(Array.from({ length: start }, (_, i) => (i * 7919 + 13) % model.vocabSize), 0);
let id = 1;
const t = performance.now();
for (let i = 0; i < steps; i++) id = await model.forwardArgmax([id], start + i);
const s = (performance.now() - t) / 1000;
process.stdout.write(`${dir}: ${steps} decode steps from context ${context}${skipAttention ? ' WITHOUT attention' : ''}: ${(steps / s).toFixed(1)} tok/s (first step includes the graph capture)\n`);
model.dispose();
