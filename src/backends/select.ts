import { UsageError } from '../errors.js';
import type { Backend } from './backend.js';
import { CpuBackend } from './cpu/cpuBackend.js';

export type BackendKind = 'auto' | 'cpu' | 'cuda';

export function parseBackendKind(raw: string | undefined): BackendKind {
  const kind = raw ?? 'auto';
  if (kind === 'auto' || kind === 'cpu' || kind === 'cuda') return kind;
  throw new UsageError(`--backend must be auto, cpu or cuda, got "${kind}"`);
}

/**
 * The backend for `kind`. `auto` takes CUDA when a driver and a GPU answer, else the CPU, and
 * says which through `log`. The CUDA module is imported only when asked for, so CPU users never
 * load the driver bindings.
 */
export async function createBackend(kind: BackendKind, log: (line: string) => void = () => {}, options: { threads?: number } = {}): Promise<Backend> {
  if (kind === 'cpu') return new CpuBackend(options);
  const cuda = await import('./cuda/entry.js');
  if (kind === 'cuda') return cuda.createCudaBackend();
  const probe = cuda.cudaAvailable();
  if (probe.ok) {
    log('backend: cuda (auto: a CUDA GPU is present)');
    return cuda.createCudaBackend();
  }
  const cpu = new CpuBackend(options);
  log(`backend: ${cpu.name} (auto: ${probe.reason})`);
  return cpu;
}
