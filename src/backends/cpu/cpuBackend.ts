import type { Activation, LinearHost, LinearWeight } from '../backend.js';
import { Op } from './fast/jobs.js';
import { defaultThreads, kernelModule, WasmEngine } from './fast/engine.js';
import { MAX_GEMVQ_ROWS } from './fast/gemvqRows.js';
import { quantizeRow } from './fast/int8Activations.js';
import { fieldInput } from './fast/kernels.js';
import { perBits } from './fast/perBits.js';
import { repackDense, repackGptq, type FastDense, type FastGptq } from './fast/repack.js';
import { act, CpuActivation, PlainCpuBackend } from './plainBackend.js';

export { PlainCpuBackend } from './plainBackend.js';

export interface CpuBackendOptions {
  /** compute threads including the calling one (default: QLLAMA_CPU_THREADS, else all cores) */
  readonly threads?: number;
  /** false: the plain TypeScript kernels only (the reference) */
  readonly simd?: boolean;
  /**
   * GPTQ matrix-vector products (decode) with the activation quantized to int8 per block of ≤ 128
   * inputs and integer dot products (default: true unless QLLAMA_CPU_INT8=0); false keeps them in
   * f32. Prompt rows (4 or more) and decode steps of more than INT8_GEMV_MAX_ROWS rows run in f32.
   */
  readonly int8Gemv?: boolean;
}

/** Below this many multiply-adds a linear layer runs on the calling thread alone. */
const PARALLEL_MACS = 1 << 19;

/** 2^(−bits·j) for j < 32/bits */
const gemvScales = perBits((bits) => Float32Array.from({ length: 32 / bits }, (_, j) => 2 ** (-bits * j)));
/** fieldInput(bits, j) for j < 32/bits: the input field j of a word holds */
const fieldInputs = perBits((bits) => Int32Array.from({ length: 32 / bits }, (_, j) => fieldInput(bits, j)));

function int8Default(): boolean {
  return process.env.QLLAMA_CPU_INT8 !== '0';
}

/**
 * From this many prompt rows GPTQ layers are dequantized block by block and multiplied as f32 GEMM
 * (prefill keeps f32 activations); decode rows go to the int8 GEMV up to INT8_GEMV_MAX_ROWS.
 */
const GEMM_ROWS = 4;
/**
 * Up to this many rows of a batched decode step (inside `decodeStep`) a GPTQ layer runs the int8
 * GEMV (int8Gemv on): all rows in one pass over the weights, each row's result the same as alone.
 */
export const INT8_GEMV_MAX_ROWS = MAX_GEMVQ_ROWS;

/**
 * The default CPU backend: linear layers (dense f32 and GPTQ 2/3/4/8-bit, act-order included) run
 * as WebAssembly SIMD kernels on weights repacked at upload, split across worker threads; the
 * other ops are the plain backend's, on views of the same shared memory. Where WebAssembly SIMD
 * is missing, or a layer's shape does not suit the kernels, the plain path runs instead.
 */
export class CpuBackend extends PlainCpuBackend {
  override readonly name: string;
  private readonly engine: WasmEngine | null;
  readonly int8Gemv: boolean;

  constructor(options: CpuBackendOptions = {}) {
    super();
    const threads = Math.max(1, Math.floor(options.threads ?? defaultThreads()));
    const module = options.simd === false ? null : kernelModule();
    this.engine = module ? new WasmEngine(module, threads) : null;
    this.int8Gemv = options.int8Gemv ?? int8Default();
    this.name = this.engine ? `cpu (wasm simd, ${threads} thread${threads === 1 ? '' : 's'})` : 'cpu';
  }

  get threads(): number {
    return this.engine?.threads ?? 1;
  }

  override allocActivation(rows: number, cols: number): Activation {
    const e = this.engine;
    if (!e) return super.allocActivation(rows, cols);
    const ptr = e.alloc(rows * cols * 4);
    return new CpuActivation(rows, cols, e.f32(ptr, rows * cols), ptr);
  }

  override uploadLinear(weight: LinearHost): LinearWeight {
    const e = this.engine;
    const fast = e && (weight.kind === 'dense' ? repackDense(e, weight) : repackGptq(e, weight));
    return fast ?? super.uploadLinear(weight);
  }

  private inDecodeStep = false;
  /** Linears issued by `record` are decode rows: up to INT8_GEMV_MAX_ROWS of them take the int8 GEMV. */
  decodeStep(record: () => void): void {
    const outer = this.inDecodeStep;
    this.inDecodeStep = true;
    try {
      record();
    } finally {
      this.inDecodeStep = outer;
    }
  }

  override linear(out: Activation, x: Activation, weight: LinearWeight, rows: number): void {
    if (!this.fastLinear(out, x, weight, rows, 0)) super.linear(out, x, weight, rows);
  }

  linearAdd(acc: Activation, x: Activation, weight: LinearWeight, rows: number): void {
    if (this.fastLinear(acc, x, weight, rows, 1)) return;
    const tmp = this.allocScratchActivation(rows, acc.cols);
    super.linear(tmp, x, weight, rows);
    this.addInPlace(acc, tmp, rows);
  }

  private scratchAct?: CpuActivation;
  private allocScratchActivation(rows: number, cols: number): CpuActivation {
    if (!this.scratchAct || this.scratchAct.data.length < rows * cols) this.scratchAct = act(super.allocActivation(rows, cols));
    return this.scratchAct.rows * this.scratchAct.cols === rows * cols
      ? this.scratchAct
      : new CpuActivation(rows, cols, this.scratchAct.data.subarray(0, rows * cols));
  }

  private fastLinear(out: Activation, x: Activation, weight: LinearWeight, rows: number, accumulate: number): boolean {
    const e = this.engine;
    const l = weight as FastDense | FastGptq;
    if (!e || (l.kind !== 'fast-dense' && l.kind !== 'fast-gptq')) return false;
    const o = act(out), xa = act(x);
    if (o.ptr < 0 || xa.ptr < 0) return false;
    const K = l.inFeatures, N = l.outFeatures;
    const nt = rows * K * N >= PARALLEL_MACS ? e.threads : 1;
    const outStride = o.cols * 4;
    if (l.kind === 'fast-dense') {
      e.run(Op.Gemm, [xa.ptr, xa.cols * 4, l.w, K * 32, o.ptr, outStride, l.bias, K, N / 8, rows, accumulate], nt);
      return true;
    }
    // activations: permuted to the repacked row order (act-order), per-group sums for the GEMV
    let xPtr = xa.ptr, xStride = xa.cols * 4;
    if (l.perm) {
      xPtr = e.scratchPtr('xperm', rows * K * 4);
      xStride = K * 4;
      const src = xa.data, dst = e.f32(xPtr, rows * K), perm = l.perm;
      for (let t = 0; t < rows; t++) {
        const so = t * xa.cols, d = t * K;
        for (let j = 0; j < K; j++) dst[d + j] = src[so + perm[j]];
      }
    }
    if (this.int8Gemv && (rows < GEMM_ROWS || (this.inDecodeStep && rows <= INT8_GEMV_MAX_ROWS))) {
      this.gemvInt8(e, l, xPtr, xStride, o.ptr, outStride, rows, accumulate, nt);
      return true;
    }
    if (rows >= GEMM_ROWS) {
      const scratch = e.scratchPtr('dequant', e.threads * K * 32);
      e.run(Op.QGemm, [l.bits, xPtr, xStride, l.q, l.scales, l.negzs, o.ptr, outStride, l.bias, l.groups, l.rowsPerGroup,
        N / 8, rows, accumulate, scratch], nt);
      return true;
    }
    // f32 GEMV: per-group sums of x, and x in field order scaled by 2^(−bits·j) (exact) for the shift-free kernel
    const perGroup = K / l.groups;
    const perWord = 32 / l.bits;
    const sumPtr = e.scratchPtr('sumx', l.groups * 4);
    const xsPtr = e.scratchPtr('xscaled', K * 4);
    const sums = e.f32(sumPtr, l.groups), xs = e.f32(xsPtr, K);
    const pow = gemvScales(l.bits);
    const src = fieldInputs(l.bits);
    for (let t = 0; t < rows; t++) {
      const xv = e.f32(xPtr + t * xStride, K);
      for (let g = 0; g < l.groups; g++) {
        let s = 0;
        for (let i = g * perGroup, end = i + perGroup; i < end; i += perWord) {
          // field j of a chunk's word holds input src[j]; it is read against xs[i + j]
          for (let j = 0; j < perWord; j++) {
            const v = xv[i + src[j]];
            s += v;
            xs[i + j] = v * pow[j];
          }
        }
        sums[g] = s;
      }
      e.run(Op.Gemv, [l.bits, xsPtr, l.q, l.scales, l.negzs, sumPtr, o.ptr + t * outStride, l.groups, l.rowsPerGroup,
        N / 8, accumulate, l.bias], nt);
    }
    return true;
  }

  /**
   * `rows` (1..MAX_GEMVQ_ROWS) through the int8 GEMV: each row's x quantized (quantizeRow), then
   * one kernel pass — gemvq for one row, gemvqRows for more, which loads and unpacks each weight
   * block once for all rows and gives every row exactly gemvq's result.
   */
  private gemvInt8(e: WasmEngine, l: FastGptq, xPtr: number, xStride: number, outPtr: number, outStride: number,
    rows: number, accumulate: number, nt: number): void {
    const K = l.inFeatures, blocks = K / l.xBlock, bpg = blocks / l.groups, cpb = l.xBlock / (32 / l.bits);
    const xqPtr = e.scratchPtr('xq16', MAX_GEMVQ_ROWS * K * 2), dxPtr = e.scratchPtr('dx', MAX_GEMVQ_ROWS * blocks * 4);
    const sumPtr = e.scratchPtr('sumxq', MAX_GEMVQ_ROWS * l.groups * 4);
    const xq = e.i16(xqPtr, rows * K), dx = e.f32(dxPtr, rows * blocks), sums = e.f32(sumPtr, rows * l.groups);
    for (let t = 0; t < rows; t++) quantizeRow(l, e.f32(xPtr + t * xStride, K), xq, dx, sums, t, rows);
    if (rows === 1) {
      e.run(Op.GemvQ8, [l.bits, xqPtr, dxPtr, sumPtr, l.q, l.scales, l.negzs, outPtr, l.groups, bpg, cpb,
        l.outFeatures / 8, accumulate, l.bias], nt);
      return;
    }
    const scratch = e.scratchPtr('gemvqRows', e.threads * MAX_GEMVQ_ROWS * 64);
    e.run(Op.GemvQ8Rows, [l.bits, rows, xqPtr, dxPtr, sumPtr, l.q, l.scales, l.negzs, outPtr, outStride, l.groups, bpg, cpb,
      l.outFeatures / 8, accumulate, l.bias, scratch], nt);
  }

  override dispose(): void {
    super.dispose();
    this.engine?.dispose();
  }
}
