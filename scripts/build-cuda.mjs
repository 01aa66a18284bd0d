// Compiles every kernel under src/backends/cuda/kernels/*.cu into one fatbin (sm_80, sm_86, sm_89,
// sm_90a machine code + compute_90 PTX for newer GPUs; sm_90a, not sm_90: the Hopper GEMM (gemm_wgmma.cu)
// needs wgmma, and sm_90a code runs on every sm_90 card) at src/backends/cuda/qllama-kernels.fatbin,
// and copies it next to the compiled backend in dist/ when that exists. Needs nvcc (CUDA >= 12).
// Usage: npm run build:cuda [-- --verbose]   (QLLAMA_NVCC overrides the nvcc path)
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const kernelDir = path.join(root, 'src/backends/cuda/kernels');
const out = path.join(root, 'src/backends/cuda/qllama-kernels.fatbin');
const nvcc = process.env.QLLAMA_NVCC ?? 'nvcc';
const verbose = process.argv.includes('--verbose');

const sources = readdirSync(kernelDir).filter((f) => f.endsWith('.cu')).sort();
if (sources.length === 0) throw new Error(`no .cu files under ${kernelDir}`);
// One translation unit: one fatbin, one module load, and common.cuh compiled once.
const work = mkdtempSync(path.join(tmpdir(), 'qllama-cuda-'));
const unity = path.join(work, 'qllama_kernels.cu');
writeFileSync(unity, sources.map((f) => `#include "${path.join(kernelDir, f)}"\n`).join(''));

const targets = ['80', '86', '89', '90a'].flatMap((sm) => ['-gencode', `arch=compute_${sm},code=sm_${sm}`]);
const args = ['-fatbin', '-O3', '-std=c++17', '-lineinfo', ...targets, '-gencode', 'arch=compute_90,code=compute_90',
  ...(verbose ? ['-Xptxas', '-v'] : []), '-o', out, unity];
const t0 = Date.now();
const r = spawnSync(nvcc, args, { stdio: 'inherit' });
rmSync(work, { recursive: true, force: true });
if (r.error) {
  console.error(`build:cuda: could not run ${nvcc} (${r.error.message}); install the CUDA toolkit or set QLLAMA_NVCC`);
  process.exit(1);
}
if (r.status !== 0) process.exit(r.status ?? 1);
const size = statSync(out).size;
console.log(`build:cuda: ${sources.length} kernel files -> ${path.relative(root, out)} (${(size / 1024).toFixed(0)} KiB, ${((Date.now() - t0) / 1000).toFixed(1)} s)`);
const distDir = path.join(root, 'dist/src/backends/cuda');
if (existsSync(path.join(root, 'dist'))) {
  mkdirSync(distDir, { recursive: true });
  copyFileSync(out, path.join(distDir, 'qllama-kernels.fatbin'));
}
