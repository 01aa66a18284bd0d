import { availableParallelism } from 'node:os';
import { ARGS, CTRL_INTS, execute, NT, OP, type Op } from './jobs.js';
import { kernelExports, kernelModuleBytes, MAX_PAGES, type KernelExports } from './kernels.js';
import { WorkerPool } from './pool.js';
import { wasmApi, type WasmMemory, type WasmModule } from './wasmAsm.js';

const PAGE = 65536;

/** Default thread count: QLLAMA_CPU_THREADS when set, else the cores Node may use. */
export function defaultThreads(): number {
  const env = Number(process.env.QLLAMA_CPU_THREADS);
  if (Number.isInteger(env) && env > 0) return env;
  return Math.max(1, availableParallelism());
}

let compiled: WasmModule | null | undefined;
/** The kernel module, compiled once per process; null where WebAssembly SIMD is missing. */
export function kernelModule(): WasmModule | null {
  if (compiled !== undefined) return compiled;
  compiled = null;
  try {
    const bytes = kernelModuleBytes();
    if (wasmApi && wasmApi.validate(bytes)) compiled = new wasmApi.Module(bytes);
  } catch {
    compiled = null;
  }
  return compiled;
}

/**
 * One shared WebAssembly memory (bump-allocated: weights and activations live for the backend's
 * lifetime), the kernels instantiated on it, and `threads − 1` worker threads that sleep in
 * Atomics.wait between jobs (no spinning when idle). Jobs split output blocks across threads, so
 * each output element is computed by exactly the same instruction sequence whatever the thread
 * count: results are bit-identical for 1, 2 or N threads.
 */
export class WasmEngine {
  readonly memory: WasmMemory;
  readonly k: KernelExports;
  private top = 64;
  private readonly pool: WorkerPool;
  private readonly scratch = new Map<string, { ptr: number; bytes: number }>();

  constructor(module: WasmModule, threads: number) {
    if (!wasmApi) throw new Error('WebAssembly is not available');
    this.memory = new wasmApi.Memory({ initial: 16, maximum: MAX_PAGES, shared: true });
    this.k = kernelExports(new wasmApi.Instance(module, { env: { memory: this.memory } }));
    this.pool = new WorkerPool(new URL('./worker.js', import.meta.url), module, this.memory, CTRL_INTS, threads);
  }

  /** Threads jobs may use (the main one included); 1 once the workers failed to start. */
  get threads(): number { return this.pool.threads; }

  /** `bytes` of fresh (zeroed) memory, 64-byte aligned; returns its byte offset. */
  alloc(bytes: number): number {
    const ptr = this.top;
    const end = ptr + Math.ceil(bytes / 64) * 64;
    const have = this.memory.buffer.byteLength;
    if (end > have) {
      const pages = Math.ceil((end - have) / PAGE);
      if (have / PAGE + pages > MAX_PAGES) throw new RangeError(`the CPU backend's 4 GiB wasm memory cannot hold another ${bytes} bytes`);
      this.memory.grow(pages);
    }
    this.top = end;
    return ptr;
  }

  /** Reusable scratch of at least `bytes`, keyed by purpose (valid until the next call with the same key). */
  scratchPtr(key: string, bytes: number): number {
    const s = this.scratch.get(key);
    if (s && s.bytes >= bytes) return s.ptr;
    const ptr = this.alloc(bytes);
    this.scratch.set(key, { ptr, bytes });
    return ptr;
  }

  f32(ptr: number, length: number): Float32Array { return new Float32Array(this.memory.buffer, ptr, length); }
  u32(ptr: number, length: number): Uint32Array { return new Uint32Array(this.memory.buffer, ptr, length); }
  i16(ptr: number, length: number): Int16Array { return new Int16Array(this.memory.buffer, ptr, length); }

  /** Runs job `op` with `args` on `nt` threads (main thread included) and returns when all are done. */
  run(op: Op, args: readonly number[], nt: number): void {
    const c = this.pool.ctrl;
    c[OP] = op;
    for (let i = 0; i < args.length; i++) c[ARGS + i] = args[i];
    const threads = Math.min(nt, this.threads);
    if (threads <= 1 || !this.pool.start()) {
      execute(this.k, c, 0, 1);
      return;
    }
    c[NT] = threads;
    this.pool.post(() => execute(this.k, c, 0, threads));
  }

  dispose(): void {
    this.pool.stop();
    this.scratch.clear();
  }
}
