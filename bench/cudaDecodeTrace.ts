/**
 * `QLLAMA_CUDA_FATBIN=/tmp/qllama-trace.fatbin node dist/bench/cudaDecodeTrace.js MODEL_DIR [CONTEXT] [--steps N] [--csv FILE]`:
 * where a replayed decode step's time goes, launch by launch, inside the captured graph (nsys is not on the lent GPU
 * machine, and ncu times kernels one at a time outside it). Needs the lab build of the kernels with block timelines
 * (`bash bench/lab/trace-build.sh`, sm_90a; src/backends/cuda/kernels/trace.cuh). Like cudaDecodeProfile: loads the
 * model, fills the cache to CONTEXT (default 1), runs 8 untimed steps (the graph captures), then N traced steps
 * (default 3). Prints, per kind of launch (kernel and grid), the mean of: its span of the step (previous launch's end
 * to its own), the release latency (previous end to its first griddepcontrol.wait returning), the body (release to
 * the median / last block's main loop done), the tail (last main loop done to last exit) and its head start (how long
 * its blocks were resident before the previous launch ended); then, per kind, how long its blocks took to their main
 * loop's end by how many of the launch's blocks shared their SM. --csv also writes every launch's stamps.
 */
import { writeFileSync } from 'node:fs';
import { CudaBackend } from '../src/backends/cuda/cudaBackend.js';
import { LlamaModel } from '../src/model/llama.js';
import { warmDecode } from './decodeWarmup.js';
import { accountByKind, bodyBySmLoad, groupLaunches, meanStepSpan, parseTrace, TRACE_RECORD_BYTES, type StepStart } from './traceAnalysis.js';

const argv = process.argv.slice(2);
const flag = (name: string): string | undefined => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const steps = Number(flag('--steps') ?? 3);
const csv = flag('--csv');
const positional = argv.filter((a, i) => !a.startsWith('--') && !['--steps', '--csv'].includes(argv[i - 1] ?? ''));
const [dir, ctxArg] = positional;
if (!dir || !(steps > 0)) {
  process.stderr.write('usage: cudaDecodeTrace MODEL_DIR [CONTEXT] [--steps N] [--csv FILE]   (QLLAMA_CUDA_FATBIN: a trace build)\n');
  process.exit(2);
}
const WARM = 8, WINDOW = 2048;
const backend = CudaBackend.create();
const count = backend.kernels.global('qllama_trace_n'), records = backend.kernels.global('qllama_trace');
if (count === null || records === null) {
  process.stderr.write('cudaDecodeTrace: the loaded kernels keep no block timelines: build them with bash bench/lab/trace-build.sh and set QLLAMA_CUDA_FATBIN to its output\n');
  process.exit(1);
}
const model = await LlamaModel.create(dir, { backend, contextLength: WINDOW });
const context = Math.max(1, Number(ctxArg ?? 1));
const warmed = await warmDecode(model, context, steps, WARM, WINDOW);
let id = warmed.id;
backend.synchronize();
backend.cu.memsetD32(count.ptr, 0, 1, backend.stream);
const t = performance.now();
for (let i = 0; i < steps; i++) id = await model.forwardArgmax([id], warmed.pos + i);
const ms = (performance.now() - t) / steps;
backend.synchronize();
const n = new Uint32Array(1);
backend.cu.copyDtoH(n, count.ptr, 4, backend.stream);
backend.synchronize();
const capacity = records.bytes / TRACE_RECORD_BYTES;
if (n[0] > capacity) {
  process.stderr.write(`cudaDecodeTrace: ${n[0]} blocks ran, the trace holds ${capacity}: fewer --steps\n`);
  process.exit(1);
}
const raw = Buffer.alloc(n[0] * TRACE_RECORD_BYTES);
backend.cu.copyDtoH(raw, records.ptr, raw.length, backend.stream);
backend.synchronize();
model.dispose();

const launches = groupLaunches(parseTrace(raw, n[0]));
// a step ends with lm_head (gemv_f16); the host reads the token before the next one starts
const afterLmHead: StepStart = (prev) => prev.kind.startsWith('gemv_f16');
const us = (x: number): string => (Number.isNaN(x) ? '-' : x.toFixed(2)).padStart(8);
process.stdout.write(`${dir} context ${context}, ${steps} traced steps at ${ms.toFixed(3)} ms each (host-timed, with the trace's stores) [${backend.deviceName}]\n`);
process.stdout.write(`${'launch kind'.padEnd(26)}${'count'.padStart(6)}    span  release  body50   body  tail  headstart   (µs, means)\n`);
let total = 0;
for (const a of accountByKind(launches, afterLmHead)) {
  total += a.span * a.launches;
  process.stdout.write(`${a.kind.padEnd(26)}${String(a.launches).padStart(6)}${us(a.span)}${us(a.release)}${us(a.bodyMedian)}${us(a.body)}${us(a.tail)}${us(a.headStart)}\n`);
}
process.stdout.write(`traced launches' spans: ${(total / steps / 1000).toFixed(3)} ms per step; on the GPU, first traced start to lm_head's end: ` +
  `${(meanStepSpan(launches, afterLmHead) / 1000).toFixed(3)} ms (the rest of the host-timed step: argmax, the host, the graph launch)\n`);
for (const [kind, byLoad] of bodyBySmLoad(launches)) {
  const parts = [...byLoad].map(([load, e]) => `${load} per SM: ${e.body.toFixed(2)} µs (${e.blocks} blocks)`);
  process.stdout.write(`${kind}: main loop done after release, by the launch's blocks on the block's SM: ${parts.join('; ')}\n`);
}
if (csv) {
  const rows = launches.map((l) => [l.kind, l.blocks, l.start, l.released, l.mainDoneMedian, l.mainDone, l.end].join(','));
  writeFileSync(csv, `kind,blocks,start_ns,released_ns,main_done_median_ns,main_done_ns,end_ns\n${rows.join('\n')}\n`);
}
