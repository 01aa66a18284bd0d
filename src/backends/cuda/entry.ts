import type { Backend } from '../backend.js';
import { QllamaError } from '../../errors.js';

/**
 * The CUDA backend's lazy entry point (imported only for --backend cuda|auto).
 * Placeholder until the CUDA backend lands: reports that no CUDA backend is available.
 */
export class CudaUnavailableError extends QllamaError {}

export function cudaAvailable(): { ok: true } | { ok: false; reason: string } {
  return { ok: false, reason: 'this build has no CUDA backend yet' };
}

export async function createCudaBackend(): Promise<Backend> {
  throw new CudaUnavailableError('this build of qllama has no CUDA backend yet: use --backend cpu');
}
