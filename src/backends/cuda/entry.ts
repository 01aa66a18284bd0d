import type { Backend } from '../backend.js';
import { CudaBackend, CudaUnavailableError } from './cudaBackend.js';
import { cudaAvailable as probe } from './driver.js';

/**
 * The CUDA backend's lazy entry point (imported only for --backend cuda|auto): nothing here
 * touches the driver until called, and `cudaAvailable` never throws.
 */
export { CudaUnavailableError };

export function cudaAvailable(): { ok: true } | { ok: false; reason: string } {
  return probe();
}

export async function createCudaBackend(): Promise<Backend> {
  return CudaBackend.create();
}
