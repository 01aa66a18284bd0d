/**
 * Shared pieces of the CUDA quantizer tests: fp16-exact random data (so the GPU's fp16 operands
 * hold exactly what the CPU reference reads), the quantizer's device handle, and where the
 * end-to-end fixtures are (they must be carried to the GPU machine: ../shared does not travel).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { halfArrayToFloat } from '../../src/backends/cpu/kernels/half.js';
import { toHalfArray } from '../../src/quantize/half16.js';
import { QuantGpu } from '../../src/quantize/cuda/gpu.js';
import { REPO_ROOT, SHARED } from '../support/paths.js';
import { randn } from './support.js';

let shared: QuantGpu | undefined;
/** One device handle for the whole test file (disposed with the process). */
export function quantGpu(): QuantGpu {
  shared ??= QuantGpu.create();
  return shared;
}

/** Random values rounded to fp16, as f32 and as fp16 bits. */
export function randHalfExact(n: number, scale = 1): { f32: Float32Array; f16: Uint16Array } {
  const f16 = toHalfArray(randn(n, scale));
  return { f32: halfArrayToFloat(f16), f16 };
}

/**
 * A folder laid out like ../shared (fixtures/tiny-vicuna-4k/fp16, data/c4/c4_sample.jsonl,
 * data/wikitext-2/wikitext2_test_gptq_join_lf.txt): $QLLAMA_FIXTURES, else .gpu/shared in the
 * repository (an ignored folder that travels to the GPU machine when carried), else ../shared.
 */
export function sharedRoot(): string {
  const candidates = [process.env.QLLAMA_FIXTURES, path.join(REPO_ROOT, '.gpu', 'shared'), SHARED].filter((p): p is string => !!p);
  const found = candidates.find((p) => existsSync(path.join(p, 'fixtures', 'tiny-vicuna-4k', 'fp16', 'model.safetensors')));
  if (!found) {
    throw new Error(`tiny-vicuna-4k fp16 not found under ${candidates.join(' or ')}: copy ../shared/fixtures/tiny-vicuna-4k/fp16, ` +
      '../shared/data/c4/c4_sample.jsonl and ../shared/data/wikitext-2/wikitext2_test_gptq_join_lf.txt there (same layout), or set QLLAMA_FIXTURES');
  }
  return found;
}

/** Fraction of positions where a and b are equal (within `tol`). */
export function agreement(a: ArrayLike<number>, b: ArrayLike<number>, tol = 0): number {
  if (a.length !== b.length) throw new RangeError(`lengths ${a.length} vs ${b.length}`);
  let same = 0;
  for (let i = 0; i < a.length; i++) if (Math.abs(a[i] - b[i]) <= tol) same++;
  return same / Math.max(1, a.length);
}
