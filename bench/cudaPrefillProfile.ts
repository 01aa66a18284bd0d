/**
 * `node dist/bench/cudaPrefillProfile.js MODEL_DIR [ROWS] [--reps N] [--by-shape]`: where a prompt's time goes on
 * the CUDA backend. Loads the model once, runs the ROWS-token prompt (default 2048) twice untimed (so
 * every scratch buffer has its final size), then:
 *   1. times N prompts as the model runs them (default 3): the steady rate, as bench:cuda's prefill;
 *   2. runs one more with every kernel launch bracketed by stream synchronizations and prints, per
 *      kernel name, launches and milliseconds, then the sum of kernels against the wall time of that
 *      pass and of the steady pass (the rest is host work and launch gaps that the steady pass overlaps).
 * --by-shape: the wgmma GEMM's launches by shape (rows × slice columns × K, grid) instead of one line.
 * Each bracketed kernel runs alone (no PDL overlap, no queue ahead of it), so its figure is an upper
 * bound of its share; the split by kernel is what this script is for.
 */
import { CudaBackend } from '../src/backends/cuda/cudaBackend.js';
import { LlamaModel } from '../src/model/llama.js';

const argv = process.argv.slice(2);
const repsAt = argv.indexOf('--reps');
const byShape = argv.includes('--by-shape');
const reps = repsAt >= 0 ? Number(argv[repsAt + 1]) : 3;
const positional = argv.filter((a, i) => !a.startsWith('--') && (repsAt < 0 || i !== repsAt + 1));
const [dir, rowsArg] = positional;
const rows = Number(rowsArg ?? 2048);
if (!dir || !(reps > 0) || !(rows > 0)) {
  process.stderr.write('usage: cudaPrefillProfile MODEL_DIR [ROWS] [--reps N] [--by-shape]\n');
  process.exit(2);
}
const backend = CudaBackend.create();
const model = await LlamaModel.create(dir, { backend, contextLength: Math.max(2048, rows) });
const prompt = Array.from({ length: rows }, (_, i) => (i * 7919 + 13) % model.vocabSize);
for (let i = 0; i < 2; i++) await model.forward(prompt, 0);
backend.synchronize();

let t = performance.now();
for (let i = 0; i < reps; i++) await model.forward(prompt, 0);
backend.synchronize();
const steadyMs = (performance.now() - t) / reps;
console.log(`${backend.deviceName}: prompt of ${rows} tokens ${steadyMs.toFixed(2)} ms = ${Math.round(rows / (steadyMs / 1000))} tok/s `
  + `(mean of ${reps}, prefill kernels '${backend.prefillKernels}')`);

const perKernel = new Map<string, { launches: number; ms: number }>();
const kernels = backend.kernels;
const launch = kernels.launch.bind(kernels);
kernels.launch = (name, grid, block, args, sharedBytes, pdl): void => {
  backend.synchronize();
  const t0 = performance.now();
  launch(name, grid, block, args, sharedBytes, pdl);
  backend.synchronize();
  // the GEMMs by shape: gemm_wgmma_256's / gemm_wgmma_160's rows, columns of the slice and K (its i32 arguments 1, 2 and 4), and grid
  const key = byShape && (name === 'gemm_wgmma_256' || name === 'gemm_wgmma_160')
    ? `${name} ${args[1].readInt32LE(0)}x${args[2].readInt32LE(0)}x${args[4].readInt32LE(0)} grid ${grid.x}` : name;
  const e = perKernel.get(key) ?? { launches: 0, ms: 0 };
  e.launches++;
  e.ms += performance.now() - t0;
  perKernel.set(key, e);
};
t = performance.now();
await model.forward(prompt, 0);
backend.synchronize();
const bracketedMs = performance.now() - t;
kernels.launch = launch;

const layers = model.config.numLayers;
let kernelMs = 0;
console.log(`${'kernel'.padEnd(byShape ? 48 : 28)}launches   ms total  ms/layer  share`);
for (const [name, e] of [...perKernel].sort((a, b) => b[1].ms - a[1].ms)) {
  kernelMs += e.ms;
  console.log(`${name.padEnd(byShape ? 48 : 28)}${String(e.launches).padStart(8)}${e.ms.toFixed(2).padStart(11)}${(e.ms / layers).toFixed(3).padStart(10)}`
    + `${((100 * e.ms) / bracketedMs).toFixed(1).padStart(6)}%`);
}
console.log(`kernels ${kernelMs.toFixed(2)} ms (each alone, synchronized), bracketed pass ${bracketedMs.toFixed(2)} ms, steady pass ${steadyMs.toFixed(2)} ms`);
model.dispose();
