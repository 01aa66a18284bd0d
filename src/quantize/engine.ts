import { defaultThreads } from '../backends/cpu/fast/engine.js';
import { WorkerPool } from '../backends/cpu/fast/pool.js';
import { ARGS, COUNT, CTRL_INTS, Job, KIND, NEXT, TaskContext, floatBits, runTasks } from './engineJobs.js';
import { gemmExports, gemmModuleBytes, MAX_PAGES, wasmApi, type WasmMemory, type WasmModule } from './wasmGemm.js';

const PAGE = 65536;

/** Threads for the quantizer: the CPU backend's default (QLLAMA_CPU_THREADS when set, else every core Node may use). */
export const defaultQuantizeThreads: () => number = defaultThreads;

let compiled: WasmModule | null | undefined;
function gemmModule(): WasmModule | null {
  if (compiled !== undefined) return compiled;
  compiled = null;
  try {
    const bytes = gemmModuleBytes();
    if (wasmApi && wasmApi.validate(bytes)) compiled = new wasmApi.Module(bytes);
  } catch {
    compiled = null;
  }
  return compiled;
}

/** A block of the engine's memory: its byte offset and an f32 view. */
export interface WasmBlock {
  readonly ptr: number;
  readonly f32: Float32Array;
}

/**
 * The quantizer's compute engine: one shared WebAssembly memory holding the layer runner's
 * activations, the current weight matrix and the Hessian sums; the SIMD GEMM kernel instantiated
 * on it in this thread and in `threads − 1` workers that sleep in Atomics.wait between jobs.
 * Calls are synchronous (the main thread takes tasks too, then waits for the workers).
 * Memory is bump-allocated for buffers that live as long as the engine, plus named slots that
 * are reused (grown when a bigger one is asked for).
 */
export class QuantEngine {
  readonly memory: WasmMemory;
  private readonly ctx: TaskContext;
  private top = 64;
  private readonly pool: WorkerPool;
  private readonly slots = new Map<string, { ptr: number; bytes: number }>();

  /** An engine, or undefined where WebAssembly SIMD is not available or QLLAMA_QUANTIZE_PLAIN=1 (callers fall back to plain loops). */
  static create(threads = defaultQuantizeThreads()): QuantEngine | undefined {
    if (process.env.QLLAMA_QUANTIZE_PLAIN === '1') return undefined; // the plain TypeScript loops (comparisons)
    const module = gemmModule();
    return module ? new QuantEngine(module, Math.max(1, Math.floor(threads))) : undefined;
  }

  private constructor(module: WasmModule, threads: number) {
    if (!wasmApi) throw new Error('WebAssembly is not available');
    this.memory = new wasmApi.Memory({ initial: 1, maximum: MAX_PAGES, shared: true });
    this.ctx = new TaskContext(gemmExports(new wasmApi.Instance(module, { env: { memory: this.memory } })), this.memory, 0);
    this.pool = new WorkerPool(new URL('./engineWorker.js', import.meta.url), module, this.memory, CTRL_INTS, threads);
  }

  /** Threads the jobs use (the main one included); 1 once the workers failed to start. */
  get threads(): number {
    return this.pool.threads;
  }

  /** Bytes of wasm memory in use (the engine's share of the process's memory). */
  get bytes(): number {
    return this.memory.buffer.byteLength;
  }

  /** `bytes` of zeroed memory, 64-byte aligned, for the engine's lifetime. */
  alloc(bytes: number): WasmBlock {
    const ptr = this.top;
    const end = ptr + Math.ceil(bytes / 64) * 64;
    const have = this.memory.buffer.byteLength;
    if (end > have) {
      const pages = Math.ceil((end - have) / PAGE);
      if (have / PAGE + pages > MAX_PAGES) throw new RangeError(`the quantizer's 4 GiB wasm memory cannot hold another ${bytes} bytes`);
      this.memory.grow(pages);
    }
    this.top = end;
    return { ptr, f32: new Float32Array(this.buf(), ptr, Math.floor(bytes / 4)) };
  }

  /** Reusable memory of at least `bytes` under `key` (contents undefined; valid until the next call with the key). */
  slot(key: string, bytes: number): number {
    const s = this.slots.get(key);
    if (s && s.bytes >= bytes) return s.ptr;
    const { ptr } = this.alloc(bytes);
    this.slots.set(key, { ptr, bytes });
    return ptr;
  }

  f32(ptr: number, length: number): Float32Array {
    return new Float32Array(this.buf(), ptr, length);
  }

  f64(ptr: number, length: number): Float64Array {
    return new Float64Array(this.buf(), ptr, length);
  }

  /** The byte offset of `a` if it lives in this engine's memory. */
  ptrOf(a: Float32Array): number | undefined {
    return this.ownBuffers.has(a.buffer) ? a.byteOffset : undefined;
  }

  private readonly ownBuffers = new WeakSet<ArrayBufferLike>();

  /** The memory's current buffer, remembered so views made on it are recognised as engine memory. */
  private buf(): SharedArrayBuffer {
    const b = this.memory.buffer;
    this.ownBuffers.add(b);
    return b;
  }

  /** `a` in engine memory: its own offset, or a copy in slot `key`. */
  place(a: Float32Array, key: string): number {
    const own = this.ptrOf(a);
    if (own !== undefined) return own;
    const ptr = this.slot(key, a.byteLength);
    this.f32(ptr, a.length).set(a);
    return ptr;
  }

  /** out `[rows, outF]` = x `[rows, inF]`·w `[outF, inF]`ᵀ; x and out are engine blocks, w is copied in if it is not. inF % 4 = 0. */
  linear(out: number, x: number, w: Float32Array, rows: number, inF: number, outF: number): void {
    const wp = this.place(w, 'linear.w');
    // a panel of W near 96 KiB stays in L2 while all rows of x go past it
    const panel = Math.max(8, Math.min(outF, Math.floor(96 * 1024 / (inF * 4)) & ~1));
    const chunk = rows <= 64 ? rows : 64;
    const tasks = Math.ceil(outF / panel) * Math.ceil(rows / chunk);
    this.run(Job.Linear, [x, wp, out, rows, inF, outF, panel, chunk], tasks);
  }

  /** sum `[n, n]` f64 (lower triangle and diagonal blocks) += xt·xtᵀ over xt `[n, kPad]`, kPad % 4 = 0. */
  gram(sum: number, xt: number, n: number, kPad: number): void {
    const panel = 16;
    this.run(Job.Gram, [xt, sum, n, kPad, panel], Math.ceil(n / panel));
  }

  /**
   * Causal attention of `rows` query rows at positions 0..rows−1: q `[rows, heads·hd]`, k
   * `[rows, kvHeads·hd]` (both after RoPE), vt `[kvHeads·hd, kPad]` (V transposed, zero past
   * `rows`), out `[rows, heads·hd]`. Needs `scoreBytes(kPad)` of scratch at `s`.
   */
  attention(out: number, q: number, k: number, vt: number, s: number, rows: number, kPad: number, heads: number, kvHeads: number, hd: number): void {
    const blockRows = ATTENTION_BLOCK;
    const tasks = Math.ceil(rows / blockRows) * heads;
    this.run(Job.Attention, [q, k, vt, out, s, blockRows * kPad * 4, rows, kPad, heads, kvHeads, hd, blockRows, floatBits(1 / Math.sqrt(hd))], tasks);
  }

  /** Scratch the attention needs for rows padded to `kPad`. */
  scoreBytes(kPad: number): number {
    return this.threads * ATTENTION_BLOCK * kPad * 4;
  }

  private run(kind: number, args: readonly number[], tasks: number): void {
    const c = this.pool.ctrl;
    c[KIND] = kind;
    for (let i = 0; i < args.length; i++) c[ARGS + i] = args[i] | 0;
    c[COUNT] = tasks;
    Atomics.store(c, NEXT, 0);
    if (this.threads <= 1 || tasks <= 1 || !this.pool.start()) {
      runTasks(this.ctx, c);
      return;
    }
    this.pool.post(() => runTasks(this.ctx, c));
  }

  dispose(): void {
    this.pool.stop();
    this.slots.clear();
  }
}

/** Query rows per attention task. */
const ATTENTION_BLOCK = 32;
