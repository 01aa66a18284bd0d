import { JOB, JOB_WORDS } from '../backends/cpu/fast/pool.js';
import { BLOCKS, GemmMode, type GemmExports, type WasmMemory } from './wasmGemm.js';

/**
 * The jobs the quantizer's threads share. A job is a kind plus integer arguments in a shared
 * control block; its tasks are numbered 0..count−1 and every thread (the main one included)
 * claims the next number with an atomic add until none are left. A task's index alone says which
 * part of the output it computes, and every output element is computed by exactly one task with
 * the same instruction sequence, so results are identical whatever the thread count.
 */

// control block layout (Int32 indices), after the pool's words (GEN, DONE, READY, JOB)
export const KIND = JOB;
export const COUNT = JOB_WORDS; // tasks in the job
export const NEXT = JOB_WORDS + 1; // next task to claim
export const ARGS = 8;
export const CTRL_INTS = 32;

/** Stop is the pool's STOP */
export const Job = { Stop: 0, Linear: 1, Gram: 2, Attention: 3 } as const;

/** What a thread needs to run tasks: the kernels and views of the shared memory. */
export class TaskContext {
  private f32View: Float32Array<ArrayBufferLike> = new Float32Array(0);
  constructor(readonly k: GemmExports, readonly memory: WasmMemory, readonly thread: number) {}

  /** A view of the whole memory (re-made after it grew). */
  f32(): Float32Array {
    if (this.f32View.byteLength !== this.memory.buffer.byteLength) this.f32View = new Float32Array(this.memory.buffer);
    return this.f32View;
  }
}

/** Runs tasks of the posted job until none are left. */
export function runTasks(ctx: TaskContext, c: Int32Array): void {
  const count = c[COUNT];
  for (let t = Atomics.add(c, NEXT, 1); t < count; t = Atomics.add(c, NEXT, 1)) runTask(ctx, c, t);
}

function runTask(ctx: TaskContext, c: Int32Array, t: number): void {
  switch (c[KIND]) {
    case Job.Linear: return linearTask(ctx, c, t);
    case Job.Gram: return gramTask(ctx, c, t);
    case Job.Attention: return attentionTask(ctx, c, t);
  }
}

/** C `[rows, cols]` (op)= A `[rows, k]`·B `[cols, k]`ᵀ, any rows/cols; pointers and strides in bytes; k a multiple of 4. */
export function gemm(k: GemmExports, a: number, b: number, cPtr: number, rows: number, cols: number, kFloats: number, lda: number, ldb: number, ldc: number, mode: number): void {
  const [mr, nr] = BLOCKS[0];
  const rm = rows - (rows % mr);
  const cm = cols - (cols % nr);
  const esz = mode === GemmMode.AddF64 ? 8 : 4;
  const kb = kFloats * 4;
  if (rm > 0 && cm > 0) k.main(a, b, cPtr, rm, cm, kb, lda, ldb, ldc, mode);
  if (rm > 0 && cm < cols) k.edge(a, b + cm * ldb, cPtr + cm * esz, rm, cols - cm, kb, lda, ldb, ldc, mode);
  if (rm < rows) k.edge(a + rm * lda, b, cPtr + rm * ldc, rows - rm, cols, kb, lda, ldb, ldc, mode);
}

// Linear: args x, w, out, rows, inF, outF, panelCols, chunkRows. Task = (column panel, row chunk):
// a panel of W small enough to stay in cache, against a chunk of rows.
function linearTask(ctx: TaskContext, c: Int32Array, t: number): void {
  const [x, w, out, rows, inF, outF, panel, chunk] = args(c, 8);
  const panels = Math.ceil(outF / panel);
  const p = t % panels, r = Math.floor(t / panels);
  const o0 = p * panel, t0 = r * chunk;
  gemm(ctx.k, x + t0 * inF * 4, w + o0 * inF * 4, out + (t0 * outF + o0) * 4, Math.min(chunk, rows - t0), Math.min(panel, outF - o0), inF, inF * 4, inF * 4, outF * 4, GemmMode.Set);
}

// Gram: args xt, sum, n, kPad, panel. Task = a panel of `panel` rows of the lower triangle
// (largest first), sum[i, j] += Σ_t xt[i, t]·xt[j, t] for j < i1 (the diagonal block in full).
function gramTask(ctx: TaskContext, c: Int32Array, t: number): void {
  const [xt, sum, n, kPad, panel] = args(c, 5);
  const panels = Math.ceil(n / panel);
  const i0 = (panels - 1 - t) * panel;
  const i1 = Math.min(n, i0 + panel);
  gemm(ctx.k, xt + i0 * kPad * 4, xt, sum + i0 * n * 8, i1 - i0, i1, kPad, kPad * 4, kPad * 4, n * 8, GemmMode.AddF64);
}

// Attention: args q, k, vt, out, s, sStride(bytes), rows, kPad, heads, kvHeads, headDim, blockRows, scaleBits.
// Task = (block of query rows, head), later blocks first. Scores of the block go to the thread's
// own scratch s + thread·sStride `[blockRows, kPad]`; softmax in place; then P·V with V transposed
// (vt `[kvHeads·headDim, kPad]`, zero past `rows`).
const scaleView = new Float32Array(1);
const scaleBitsView = new Int32Array(scaleView.buffer);

export function floatBits(v: number): number {
  scaleView[0] = v;
  return scaleBitsView[0];
}

function attentionTask(ctx: TaskContext, c: Int32Array, t: number): void {
  const [q, kp, vt, out, sBase, sStride, rows, kPad, heads, kvHeads, hd, blockRows] = args(c, 12);
  scaleBitsView[0] = c[ARGS + 12];
  const scale = scaleView[0];
  const blocks = Math.ceil(rows / blockRows);
  const b = blocks - 1 - Math.floor(t / heads);
  const h = t % heads;
  const kvh = Math.floor(h / (heads / kvHeads));
  const dim = heads * hd, kvDim = kvHeads * hd;
  const t0 = b * blockRows, t1 = Math.min(rows, t0 + blockRows);
  const n = t1 - t0;
  const s = sBase + ctx.thread * sStride;
  const kUsed = Math.min(kPad, (t1 + 3) & ~3);
  gemm(ctx.k, q + (t0 * dim + h * hd) * 4, kp + kvh * hd * 4, s, n, t1, hd, dim * 4, kvDim * 4, kPad * 4, GemmMode.Set);
  const f = ctx.f32();
  for (let r = 0; r < n; r++) {
    const row = s / 4 + r * kPad;
    const len = t0 + r + 1;
    let max = -Infinity;
    for (let p = 0; p < len; p++) {
      const v = f[row + p] * scale;
      f[row + p] = v;
      if (v > max) max = v;
    }
    let sum = 0;
    for (let p = 0; p < len; p++) {
      const e = Math.exp(f[row + p] - max);
      f[row + p] = e;
      sum += e;
    }
    const inv = 1 / sum;
    for (let p = 0; p < len; p++) f[row + p] *= inv;
    f.fill(0, row + len, row + kUsed);
  }
  gemm(ctx.k, s, vt + kvh * hd * kPad * 4, out + (t0 * dim + h * hd) * 4, n, hd, kUsed, kPad * 4, kPad * 4, dim * 4, GemmMode.Set);
}

function args(c: Int32Array, n: number): number[] {
  const a: number[] = [];
  for (let i = 0; i < n; i++) a.push(c[ARGS + i] >>> 0); // pointers may pass 2 GiB
  return a;
}
