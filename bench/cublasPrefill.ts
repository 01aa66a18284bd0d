/**
 * Runs bench/cublasPrefill.py (cuBLAS through PyTorch at a model's prompt linears, sustained) and reads its JSON
 * line, with the clock and power it ran at (sampled by the script itself). Needs python3 with torch on the GPU machine.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describeClocks, type PhaseClocks } from './gpuSampler.js';

export interface CublasPrefill {
  readonly rows: number;
  readonly seconds: number;
  readonly msPerLayer: number;
  readonly tflops: number;
  /** rows / (layers · msPerLayer): the prompt rate if everything but the linears took no time */
  readonly linearsOnlyTokS: number;
  readonly clocks: string;
}

const SCRIPT = fileURLToPath(new URL('../../bench/cublasPrefill.py', import.meta.url));
const SECONDS = 4;

/** The figures, or why there are none (no python3 or torch, no GPU, a failed run). */
export function runCublasPrefill(shape: { readonly hidden: number; readonly ffn: number; readonly layers: number }, rows: number): CublasPrefill | string {
  const r = spawnSync('python3', [SCRIPT, String(shape.hidden), String(shape.ffn), String(shape.layers), String(rows), String(SECONDS)],
    { encoding: 'utf8', timeout: 300_000 });
  if (r.error) return `cuBLAS prefill ceiling not measured: python3 did not run (${r.error.message})`;
  const line = r.stdout.trim().split('\n').pop() ?? '';
  let j: { msPerLayer?: number; tflops?: number; linearsOnlyTokS?: number; clocks?: PhaseClocks | null };
  try {
    j = JSON.parse(line) as typeof j;
  } catch {
    return `cuBLAS prefill ceiling not measured (${path.basename(SCRIPT)} exit ${r.status}): ${(r.stdout + r.stderr).trim().slice(-300)}`;
  }
  if (j.msPerLayer === undefined || j.tflops === undefined || j.linearsOnlyTokS === undefined) {
    return `cuBLAS prefill ceiling: unexpected output ${line.slice(0, 200)}`;
  }
  return { rows, seconds: SECONDS, msPerLayer: j.msPerLayer, tflops: j.tflops, linearsOnlyTokS: j.linearsOnlyTokS, clocks: describeClocks(j.clocks ?? null) };
}
