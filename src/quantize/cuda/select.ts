/**
 * `--backend cpu|cuda|auto` for `qllama quantize`: which LayerCompute runs, decided before anything
 * is written. Only the driver probe is loaded here; the GPU code is imported when chosen.
 */
import { cudaAvailable } from '../../backends/cuda/driver.js';
import type { LayerDims } from '../layerRunner.js';
import { QuantizeCudaUnavailableError, QuantizeCudaUnsupportedError } from './gpu.js';

export type QuantizeBackendKind = 'auto' | 'cpu' | 'cuda';

/** `cuda` without a usable GPU fails with what to do; `auto` takes CUDA when a GPU answers and the shapes suit it. */
export function resolveQuantizeBackend(kind: QuantizeBackendKind, dims: LayerDims, log: (line: string) => void): 'cpu' | 'cuda' {
  if (kind === 'cpu') return 'cpu';
  const probe = cudaAvailable();
  if (!probe.ok) {
    if (kind === 'cuda') throw new QuantizeCudaUnavailableError(`--backend cuda: ${probe.reason}${/--backend cpu/.test(probe.reason) ? '' : '; quantize with --backend cpu'}`);
    log(`backend: cpu (auto: ${probe.reason})`);
    return 'cpu';
  }
  const unsupported = cudaShapeProblem(dims);
  if (unsupported) {
    if (kind === 'cuda') throw new QuantizeCudaUnsupportedError(`${unsupported}: quantize with --backend cpu`);
    log(`backend: cpu (auto: ${unsupported})`);
    return 'cpu';
  }
  if (kind === 'auto') log('backend: cuda (auto: a CUDA GPU is present)');
  return 'cuda';
}

/** Why the GPU path cannot take these shapes, or undefined. */
export function cudaShapeProblem(dims: LayerDims): string | undefined {
  const { dim, kvDim, ffn, headDim, heads, kvHeads } = dims;
  if (headDim !== 64 && headDim !== 128) return `the CUDA quantizer's attention handles head sizes 64 and 128, this model has ${headDim}`;
  if ([dim, kvDim, ffn].some((d) => d % 8 !== 0)) return `the CUDA quantizer needs hidden, kv and MLP sizes that are multiples of 8 (got ${dim}, ${kvDim}, ${ffn})`;
  if (heads % kvHeads !== 0) return `${heads} attention heads do not share ${kvHeads} kv heads evenly`;
  return undefined;
}
