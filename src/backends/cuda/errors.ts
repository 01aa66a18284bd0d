/**
 * The CUDA backend's errors, in a file of their own so the backend's parts (cudaBackend.ts, batchOps.ts)
 * throw the same classes without importing each other; cudaBackend.ts re-exports them.
 */
import { QllamaError } from '../../errors.js';

export class CudaUnavailableError extends QllamaError {}
export class CudaUnsupportedError extends QllamaError {}
