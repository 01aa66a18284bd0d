import { availableParallelism } from 'node:os';

/**
 * Sizes libuv's thread pool before anything uses it (it reads UV_THREADPOOL_SIZE once, at its first
 * use): model loads read tensors as many parallel positional reads (formats/safetensors readAsync),
 * which the default 4 threads serialize on a many-core GPU host. A user's own setting wins.
 */
process.env.UV_THREADPOOL_SIZE ??= String(Math.min(16, Math.max(4, availableParallelism())));
