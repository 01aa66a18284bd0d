/**
 * `node dist/bench/cudaDecodeProfile.js MODEL_DIR [CONTEXT[,CONTEXT...]] [--steps N] [--skip-attention | --no-attention]`:
 * a model's decode loop and nothing else, for a profiler on the GPU machine or for comparing the
 * backend's switches ($QLLAMA_CUDA_PERMX, $QLLAMA_CUDA_PDL, ...), e.g.
 *   nsys profile --cuda-graph-trace=node -o /tmp/decode node dist/bench/cudaDecodeProfile.js /tmp/m13 1
 *   nsys stats --report cuda_gpu_kern_sum /tmp/decode.nsys-rep
 * Loads the model once; for each CONTEXT (default 1) fills the KV cache to it with one prefill, runs 8
 * untimed decode steps (the graph captures), then times N greedy steps (default 96) through the
 * captured graph, as generation runs them. One line per context: the rate, the card, the switches.
 * The context window is 2048, so a long CONTEXT starts at most 2048 − (8 + N) − 1.
 * --skip-attention: attention replaced by a copy of q (wrong tokens, right shapes), so the difference
 * between the two rates is what attention costs inside the decode graph, less what the copy (a memcpy node,
 * which breaks the chain of programmatic launches) costs.
 * --no-attention: no attention at all (o_proj reads whatever its input holds; wrong tokens): the difference is
 * attention's kernel and the launch boundary it adds between q/k/v and o_proj, what folding attention into one of
 * them could save at most.
 */
import { positionBucket } from '../src/backends/cuda/attentionLaunch.js';
import { CudaBackend } from '../src/backends/cuda/cudaBackend.js';
import { LlamaModel } from '../src/model/llama.js';
import { warmDecode } from './decodeWarmup.js';

const argv = process.argv.slice(2);
const skipAttention = argv.includes('--skip-attention');
const noAttention = argv.includes('--no-attention');
const stepsAt = argv.indexOf('--steps');
const steps = stepsAt >= 0 ? Number(argv[stepsAt + 1]) : 96;
const positional = argv.filter((a, i) => !a.startsWith('--') && (stepsAt < 0 || i !== stepsAt + 1));
const [dir, ctxArg] = positional;
if (!dir || !(steps > 0)) {
  process.stderr.write('usage: cudaDecodeProfile MODEL_DIR [CONTEXT[,CONTEXT...]] [--steps N] [--skip-attention | --no-attention]\n');
  process.exit(2);
}
const contexts = (ctxArg ?? '1').split(',').map((c) => Math.max(1, Number(c)));
const WARM = 8, WINDOW = 2048;
const backend = CudaBackend.create();
if (skipAttention) backend.attention = (out, q, _cache, _shape, rows): void => backend.copyRows(out, q, 0, rows);
if (noAttention) backend.attention = (): void => {};
const model = await LlamaModel.create(dir, { backend, contextLength: WINDOW });
const knobs = `permuted x ${backend.gemvPermuteX ? 'on' : 'off'}, clusters ${backend.gemvClusters ? 'on' : 'off'}${process.env.QLLAMA_CUDA_PDL === '0' ? ', PDL off' : ''}`;
for (const context of contexts) {
  const warmed = await warmDecode(model, context, steps, WARM, WINDOW);
  const start = warmed.start;
  let id = warmed.id;
  const t = performance.now();
  for (let i = 0; i < steps; i++) id = await model.forwardArgmax([id], start + WARM + i);
  const s = (performance.now() - t) / 1000;
  // decode graphs are captured per position bucket: a timed range across a boundary includes a capture
  const crosses = positionBucket(start + WARM + 1) !== positionBucket(start + WARM + steps) ? ' (crosses a graph bucket: includes a capture)' : '';
  process.stdout.write(`${dir} context ${context} (positions ${start + WARM}..${start + WARM + steps - 1})${skipAttention ? ' attention replaced by a copy' : noAttention ? ' WITHOUT attention' : ''}: ` +
    `${(steps / s).toFixed(1)} tok/s, ${((s / steps) * 1000).toFixed(3)} ms/step${crosses} [${backend.deviceName}; ${knobs}]\n`);
}
model.dispose();
