// Compiles every kernel under src/backends/cuda/kernels/*.cu into one fatbin (sm_80, sm_86, sm_89,
// sm_90a machine code + compute_90 PTX for newer GPUs; sm_90a, not sm_90: the Hopper GEMM (gemm_wgmma.cu)
// needs wgmma, and sm_90a code runs on every sm_90 card), brotli-compressed at
// src/backends/cuda/qllama-kernels.fatbin.br, where module.ts finds it (dist holds no copy). Needs nvcc (CUDA >= 12).
// Compressed because the fatbin is 25.6 MB and 2.1 MB as brotli (quality 11, 16 MiB window): the package, the
// repository and every copy of the tree to a GPU machine shrink by that, and module.ts decompresses it in ~40 ms
// (node's own zlib, no dependency). Writes a temporary name, then renames: a failed build leaves the old file.
// Usage: npm run build:cuda [-- --verbose] [-- --plain OUT.fatbin]   (QLLAMA_NVCC overrides the nvcc path;
// --plain also keeps the uncompressed fatbin at OUT, for QLLAMA_CUDA_FATBIN in A/B runs)
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { brotliCompressSync, constants } from 'node:zlib';
import { nvccRelease } from './fatbin-code.mjs';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const kernelDir = path.join(root, 'src/backends/cuda/kernels');
const out = path.join(root, 'src/backends/cuda/qllama-kernels.fatbin.br');
const nvccRecord = path.join(root, 'src/backends/cuda/qllama-kernels.nvcc');
const plainAt = process.argv.indexOf('--plain');
const plainOut = plainAt >= 0 ? process.argv[plainAt + 1] : undefined;
const nvcc = process.env.QLLAMA_NVCC ?? 'nvcc';
const verbose = process.argv.includes('--verbose');

const files = readdirSync(kernelDir).filter((f) => f.endsWith('.cu') || f.endsWith('.cuh')).sort();
const sources = files.filter((f) => f.endsWith('.cu'));
if (sources.length === 0) throw new Error(`no .cu files under ${kernelDir}`);
// One translation unit: one fatbin, one module load, and common.cuh compiled once. nvcc writes the folder it runs
// in and the sources' paths into the fatbin's line info, so the kernels are copied into a folder named by their
// content and compiled there on relative names, with one fixed modification time (the line tables carry each file's):
// the same sources then build to the same bytes wherever they are checked out on this machine (the line tables
// also carry the included system headers' times). CI checks that the committed fatbin holds its sources' machine
// code (.ci/run, fatbin-code.mjs). (Built from a random temporary folder, two builds of the same sources differed in
// ~9,700 bytes.)
const hash = createHash('sha256');
for (const f of files) hash.update(f).update(readFileSync(path.join(kernelDir, f)));
// (/tmp itself where there is one, not $TMPDIR: the folder's path is part of the bytes)
const work = path.join(existsSync('/tmp') ? '/tmp' : tmpdir(), `qllama-cuda-${hash.digest('hex').slice(0, 16)}`);
rmSync(work, { recursive: true, force: true });
mkdirSync(work);
for (const f of files) copyFileSync(path.join(kernelDir, f), path.join(work, f));
const unityName = 'qllama_kernels.cu';
writeFileSync(path.join(work, unityName), sources.map((f) => `#include "${f}"\n`).join(''));
const fixedTime = new Date('2026-01-01T00:00:00Z');
for (const f of [...files, unityName]) utimesSync(path.join(work, f), fixedTime, fixedTime);

const targets = ['80', '86', '89', '90a'].flatMap((sm) => ['-gencode', `arch=compute_${sm},code=sm_${sm}`]);
const fatbin = path.join(work, 'qllama-kernels.fatbin');
const args = ['-fatbin', '-O3', '-std=c++17', '-lineinfo', ...targets, '-gencode', 'arch=compute_90,code=compute_90',
  ...(verbose ? ['-Xptxas', '-v'] : []), '-o', fatbin, unityName];
const t0 = Date.now();
const r = spawnSync(nvcc, args, { stdio: 'inherit', cwd: work });
if (r.error || r.status !== 0) {
  rmSync(work, { recursive: true, force: true });
  if (r.error) console.error(`build:cuda: could not run ${nvcc} (${r.error.message}); install the CUDA toolkit or set QLLAMA_NVCC`);
  process.exit(r.error ? 1 : r.status ?? 1);
}
const image = readFileSync(fatbin);
if (plainOut) copyFileSync(fatbin, plainOut);
rmSync(work, { recursive: true, force: true });
const packed = brotliCompressSync(image, {
  params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_LGWIN]: 24, [constants.BROTLI_PARAM_SIZE_HINT]: image.length },
});
writeFileSync(`${out}.tmp`, packed);
renameSync(`${out}.tmp`, out);
// which nvcc built it: CI compares a fresh build's machine code with it only under the same one (fatbin-code.mjs)
writeFileSync(nvccRecord, `${nvccRelease(nvcc) ?? 'unknown'}\n`);
console.log(`build:cuda: ${sources.length} kernel files -> ${path.relative(root, out)} (${(image.length / 1024).toFixed(0)} KiB, ` +
  `${(statSync(out).size / 1024).toFixed(0)} KiB compressed, ${((Date.now() - t0) / 1000).toFixed(1)} s)`);
