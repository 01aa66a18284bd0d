/**
 * `npm run bench:cpu`: the fast CPU backend on this machine, each figure beside the physical limit
 * measured in the same run, and the plain reference kernels measured alongside ("before").
 *   1. ceiling: memory read bandwidth (wasm SIMD streaming read of 1 GiB, 1 and N threads)
 *   2. int4 g128 GEMV at LLaMA-13B shapes 5120×13824 and 13824×5120 (three copies of each, cycled,
 *      so the working set is far beyond the caches): GB/s of weights read and ratio to the ceiling,
 *      int8-activation kernel (default) and f32 kernel (before); 8- and 2-bit at 5120×13824
 *   3. tiny-vicuna-4k (4-bit g128): prefill and decode tokens/s, plain vs fast
 *   4. a LLaMA-7B-shaped 4-bit layer (q,k,v,o,gate,up,down) + fp16 lm_head: decode tokens/s of the
 *      32-layer model extrapolated from one layer, against its bandwidth ceiling
 * Ends with one JSON line of every figure.
 */
import { availableParallelism, cpus } from 'node:os';
import path from 'node:path';
import type { Backend, LinearHost, LinearWeight } from '../src/backends/backend.js';
import { CpuBackend, PlainCpuBackend } from '../src/backends/cpu/cpuBackend.js';
import { kernelModule, WasmEngine } from '../src/backends/cpu/fast/engine.js';
import { Op } from '../src/backends/cpu/fast/jobs.js';
import { LlamaModel } from '../src/model/llama.js';
import { FIXTURES } from '../test/support/paths.js';
import { randomDense, randomPackedGptq, randomVector, rng } from './cpuWeights.js';

const cores = availableParallelism();
const threadCounts = [...new Set([1, 2, cores])].filter((t) => t <= Math.max(2, cores));
const figures: Record<string, unknown> = {
  machine: `${cpus()[0]?.model.trim() ?? 'cpu'}, ${cores} cores`, node: process.version, date: new Date().toISOString().slice(0, 10),
};
const log = (line: string): void => { process.stdout.write(`${line}\n`); };
const r2 = (v: number): number => Math.round(v * 100) / 100;

/** Median seconds per call of `fn` over `rounds` rounds of `reps` calls. */
function timeS(fn: () => void, reps: number, rounds = 5): number {
  fn();
  const t: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < reps; i++) fn();
    t.push(Number(process.hrtime.bigint() - t0) / 1e9 / reps);
  }
  return t.sort((a, b) => a - b)[Math.floor(t.length / 2)];
}

const module = kernelModule();
if (!module) throw new Error('this Node has no WebAssembly SIMD: the fast CPU backend is unavailable');

// 1. the ceiling
const bw: Record<number, number> = {};
{
  const e = new WasmEngine(module, Math.max(...threadCounts));
  const bytes = 1 << 30;
  const ptr = e.alloc(bytes);
  e.f32(ptr, bytes / 4).fill(1); // touch every page: untouched pages would read the zero page
  const sink = e.alloc(16 * 64);
  for (const t of threadCounts) {
    const s = timeS(() => e.run(Op.Read, [ptr, bytes / 65536, sink], t), 2);
    bw[t] = bytes / s / 1e9;
    log(`memory read bandwidth, ${t} thread${t > 1 ? 's' : ''}: ${bw[t].toFixed(1)} GB/s`);
  }
  e.dispose();
}
const ceiling = Math.max(...Object.values(bw));
figures.read_bandwidth_gbs = Object.fromEntries(threadCounts.map((t) => [`${t}t`, r2(bw[t])]));

// 2. int4 g128 GEMV at 13B shapes (int8 activations, the default), with the f32 GEMV kernel
//    (int8Gemv: false, the previous default) and the plain reference as "before" in the same run
const rand = rng(1234);
const gemvFig: Record<string, number> = {};
let bestRatio = 0;
/** Seconds per call of a GEMV of `host` on `b` (three uploaded copies cycled, so nothing stays cached). */
function gemvSeconds(b: Backend, host: LinearHost, x: Float32Array): number {
  const ws = [0, 1, 2].map(() => b.uploadLinear(host));
  const xa = b.allocActivation(1, host.inFeatures), out = b.allocActivation(1, host.outFeatures);
  b.writeActivation(xa, x);
  let i = 0;
  return timeS(() => b.linear(out, xa, ws[i++ % 3], 1), 15);
}
for (const [inF, outF] of [[5120, 13824], [13824, 5120]] as const) {
  const host = randomPackedGptq(4, 128, inF, outF, rand);
  const x = randomVector(inF, rand);
  // bytes the fast kernel reads per call: int4 values + f32 scale and −zero·scale per group and column
  const fastBytes = (inF * outF) / 2 + (inF / 128) * outF * 8;
  const fileBytes = (inF * outF) / 2 + (inF / 128) * outF * 2.5;
  for (const t of threadCounts) {
    for (const int8Gemv of [true, false]) {
      const b = new CpuBackend({ threads: t, int8Gemv });
      const s = gemvSeconds(b, host, x);
      b.dispose();
      const gbs = fastBytes / s / 1e9;
      const ratio = gbs / bw[t];
      const tag = `${inF}x${outF}_${t}t${int8Gemv ? '' : '_f32'}`;
      if (int8Gemv) bestRatio = Math.max(bestRatio, gbs / ceiling);
      gemvFig[`${tag}_gbs`] = r2(gbs);
      gemvFig[`${tag}_ratio`] = r2(ratio);
      log(`int4 g128 GEMV ${inF}×${outF}, ${t} thread${t > 1 ? 's' : ''}, ${int8Gemv ? 'int8 activations' : 'f32 kernel (before)'}: ` +
        `${(s * 1e3).toFixed(2)} ms, ${gbs.toFixed(1)} GB/s read (${(fileBytes / s / 1e9).toFixed(1)} GB/s of file-format weights), ` +
        `${(100 * ratio).toFixed(0)}% of ${t}-thread bandwidth`);
    }
  }
  // before: the plain reference kernel (dequantize 64 rows at a time, then multiply)
  const p = new PlainCpuBackend();
  const w = p.uploadLinear(host);
  const xa = p.allocActivation(1, inF), out = p.allocActivation(1, outF);
  p.writeActivation(xa, x);
  const s = timeS(() => p.linear(out, xa, w, 1), 1, 3);
  gemvFig[`${inF}x${outF}_plain_gbs`] = r2(fastBytes / s / 1e9);
  log(`int4 g128 GEMV ${inF}×${outF}, plain reference kernel: ${(s * 1e3).toFixed(1)} ms (${(fileBytes / s / 1e9).toFixed(2)} GB/s of file-format weights)`);
}
// the other widths (int8 activations), 5120×13824 g128
{
  const fig: Record<string, number> = {};
  for (const bits of [8, 2] as const) {
    const host = randomPackedGptq(bits, 128, 5120, 13824, rand);
    const x = randomVector(5120, rand);
    const bytes = (5120 * 13824 * bits) / 8 + (5120 / 128) * 13824 * 8;
    for (const t of threadCounts) {
      const b = new CpuBackend({ threads: t });
      const s = gemvSeconds(b, host, x);
      b.dispose();
      fig[`int${bits}_${t}t_gbs`] = r2(bytes / s / 1e9);
      log(`int${bits} g128 GEMV 5120×13824, ${t} thread${t > 1 ? 's' : ''}: ${(s * 1e3).toFixed(2)} ms, ${(bytes / s / 1e9).toFixed(1)} GB/s read, ` +
        `${(100 * bytes / s / 1e9 / bw[t]).toFixed(0)}% of ${t}-thread bandwidth`);
    }
  }
  figures.gemv_other_bits_g128 = fig;
}
figures.gemv_int4_g128 = gemvFig;
figures.gemv_int4_bandwidth_ratio = r2(bestRatio);

// dense f32 GEMM (tiny-vicuna's lm_head in forwardAll: 256 rows × 256 → 32000)
{
  const host = randomDense(256, 32000, rand);
  const x = randomVector(256 * 256, rand);
  const gemm: Record<string, number> = {};
  const backends: [string, Backend][] = [['plain', new PlainCpuBackend()], ...threadCounts.map((t): [string, Backend] => [`${t}t`, new CpuBackend({ threads: t })])];
  for (const [label, b] of backends) {
    const w = b.uploadLinear(host);
    const xa = b.allocActivation(256, 256), out = b.allocActivation(256, 32000);
    b.writeActivation(xa, x);
    const s = timeS(() => b.linear(out, xa, w, 256), 1, 3);
    gemm[`${label}_gmacs`] = r2((256 * 256 * 32000) / s / 1e9);
    log(`f32 GEMM 256×256 · 256×32000 (lm_head, prefill), ${label}: ${(s * 1e3).toFixed(1)} ms, ${((256 * 256 * 32000) / s / 1e9).toFixed(2)} GMAC/s`);
    b.dispose();
  }
  figures.gemm_f32_lm_head = gemm;
}

// 3. tiny-vicuna-4k
{
  const dir = path.join(FIXTURES, 'tiny-vicuna-4k', 'gptq-4bit-128g');
  const tiny: Record<string, number> = {};
  const backends: [string, () => Backend][] = [['plain', () => new PlainCpuBackend()],
    ...threadCounts.map((t): [string, () => Backend] => [`${t}t`, () => new CpuBackend({ threads: t })]),
    ['1t_f32', () => new CpuBackend({ threads: 1, int8Gemv: false })]];
  for (const [label, make] of backends) {
    const model = await LlamaModel.create(dir, { backend: make(), contextLength: 512 });
    const prompt = Array.from({ length: 256 }, (_, i) => 1 + ((i * 7919) % (model.vocabSize - 1)));
    const pre: number[] = [], dec: number[] = [];
    const decodeSteps = 64;
    for (let round = 0; round < 3; round++) {
      let t0 = performance.now();
      await model.forward(prompt, 0);
      pre.push((performance.now() - t0) / 1e3);
      t0 = performance.now();
      for (let i = 0; i < decodeSteps; i++) await model.forward([prompt[i]], 256 + i);
      dec.push((performance.now() - t0) / 1e3 / decodeSteps);
    }
    const preS = pre.sort((a, b) => a - b)[1], decS = dec.sort((a, b) => a - b)[1];
    tiny[`prefill_${label}_tok_s`] = Math.round(256 / preS);
    tiny[`decode_${label}_tok_s`] = Math.round(1 / decS);
    log(`tiny-vicuna-4k gptq-4bit-128g, ${label}: prefill ${(256 / preS).toFixed(0)} tok/s (256 tokens), decode ${(1 / decS).toFixed(0)} tok/s (context 256..320)`);
    model.dispose();
  }
  figures.tiny_vicuna_4k = tiny;
}

// 4. LLaMA-7B-shaped 4-bit decode, from one layer
{
  const shapes: [number, number][] = [[4096, 4096], [4096, 4096], [4096, 4096], [4096, 4096], [4096, 11008], [4096, 11008], [11008, 4096]];
  const hosts = shapes.map(([i, o]) => randomPackedGptq(4, 128, i, o, rand));
  const head = randomDense(4096, 32000, rand);
  const synth: Record<string, number> = {};
  const layerBytes = shapes.reduce((s, [i, o]) => s + (i * o) / 2 + (i / 128) * o * 8, 0);
  const tokenBytes = 32 * layerBytes + 4096 * 32000 * 4;
  for (const [t, int8Gemv] of threadCounts.flatMap((n) => [[n, true], [n, false]] as const)) {
    const b = new CpuBackend({ threads: t, int8Gemv });
    const ws: LinearWeight[] = hosts.map((h: LinearHost) => b.uploadLinear(h));
    const xs = shapes.map(([i]) => b.allocActivation(1, i)), outs = shapes.map(([, o]) => b.allocActivation(1, o));
    xs.forEach((x, k) => b.writeActivation(x, randomVector(shapes[k][0], rand)));
    const layer = timeS(() => ws.forEach((w, k) => b.linear(outs[k], xs[k], w, 1)), 3);
    const hw = b.uploadLinear(head);
    const hx = b.allocActivation(1, 4096), ho = b.allocActivation(1, 32000);
    const lm = timeS(() => b.linear(ho, hx, hw, 1), 3);
    const tokS = 1 / (32 * layer + lm);
    const ceilTokS = bw[t] / (tokenBytes / 1e9);
    synth[`decode_${t}t${int8Gemv ? '' : '_f32'}_tok_s`] = r2(tokS);
    synth[`ceiling_${t}t_tok_s`] = r2(ceilTokS);
    log(`LLaMA-7B-shaped int4 g128 decode (32 × one layer + f32 lm_head), ${t} thread${t > 1 ? 's' : ''}` +
      `${int8Gemv ? '' : ', f32 GEMV (before)'}: ${tokS.toFixed(2)} tok/s, ` +
      `bandwidth ceiling ${ceilTokS.toFixed(2)} tok/s (${(tokenBytes / 1e9).toFixed(2)} GB per token), ${(100 * tokS / ceilTokS).toFixed(0)}%`);
    b.dispose();
  }
  figures.llama7b_shaped_int4 = synth;
}

log(JSON.stringify(figures));
