import type { Activation, LinearHost, LinearWeight } from '../backend.js';
import { Op } from './fast/jobs.js';
import { defaultThreads, kernelModule, WasmEngine } from './fast/engine.js';
import { fieldInput, XMUL, XSCALE, type QuantBits } from './fast/kernels.js';
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
   * f32. Prefill (4+ rows) always runs in f32.
   */
  readonly int8Gemv?: boolean;
}

/** Below this many multiply-adds a linear layer runs on the calling thread alone. */
const PARALLEL_MACS = 1 << 19;
/** `make(bits)`, computed once per bit width. */
function perBits<T>(make: (bits: QuantBits) => T): (bits: QuantBits) => T {
  const cache = new Map<QuantBits, T>();
  return (bits) => {
    let v = cache.get(bits);
    if (v === undefined) {
      v = make(bits);
      cache.set(bits, v);
    }
    return v;
  };
}

/** 2^(−bits·j) for j < 32/bits */
const gemvScales = perBits((bits) => Float32Array.from({ length: 32 / bits }, (_, j) => 2 ** (-bits * j)));
/** fieldInput(bits, j) for j < 32/bits: the input field j of a word holds */
const fieldInputs = perBits((bits) => Int32Array.from({ length: 32 / bits }, (_, j) => fieldInput(bits, j)));
/** XMUL per input of a chunk of 32/bits inputs (input 2m+e → XMUL[m]) */
const fieldMul = perBits((bits) => Int32Array.from({ length: 32 / bits }, (_, i) => XMUL[bits][i >> 1]));

function int8Default(): boolean {
  return process.env.QLLAMA_CPU_INT8 !== '0';
}

/** From this many rows GPTQ layers are dequantized block by block and multiplied as f32 GEMM. */
const GEMM_ROWS = 4;

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
    if (rows >= GEMM_ROWS) {
      const scratch = e.scratchPtr('dequant', e.threads * K * 32);
      e.run(Op.QGemm, [l.bits, xPtr, xStride, l.q, l.scales, l.negzs, o.ptr, outStride, l.bias, l.groups, l.rowsPerGroup,
        N / 8, rows, accumulate, scratch], nt);
      return true;
    }
    if (this.int8Gemv) {
      for (let t = 0; t < rows; t++) this.gemvInt8(e, l, xPtr + t * xStride, o.ptr + t * outStride, accumulate, nt);
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
   * One row through the int8 GEMV: x quantized per block of `xBlock` inputs to xq = round(x/dx),
   * dx = max|x|/127 (symmetric, as llama.cpp's Q8_0), stored as i16 times the kernel's field
   * multipliers; per group the sum of the quantized x for the zero-point term.
   */
  private gemvInt8(e: WasmEngine, l: FastGptq, xPtr: number, outPtr: number, accumulate: number, nt: number): void {
    const K = l.inFeatures, XB = l.xBlock, blocks = K / XB, bpg = blocks / l.groups;
    const chunk = 32 / l.bits, inv = 1 / XSCALE[l.bits];
    const xqPtr = e.scratchPtr('xq16', K * 2), dxPtr = e.scratchPtr('dx', blocks * 4), sumPtr = e.scratchPtr('sumxq', l.groups * 4);
    const xv = e.f32(xPtr, K), xq = e.i16(xqPtr, K), dx = e.f32(dxPtr, blocks), sums = e.f32(sumPtr, l.groups);
    const m = fieldMul(l.bits);
    let gsum = 0;
    for (let b = 0; b < blocks; b++) {
      const i0 = b * XB, i1 = i0 + XB;
      let amax = 0;
      for (let i = i0; i < i1; i++) { const a = Math.abs(xv[i]); if (a > amax) amax = a; }
      const d = amax / 127, id = amax > 0 ? 127 / amax : 0;
      let s = 0;
      for (let i = i0; i < i1; i++) {
        const q = Math.round(xv[i] * id);
        s += q;
        xq[i] = q * m[i % chunk];
      }
      dx[b] = d * inv;
      gsum += d * s;
      if ((b + 1) % bpg === 0) { sums[(b + 1) / bpg - 1] = gsum; gsum = 0; }
    }
    e.run(Op.GemvQ8, [l.bits, xqPtr, dxPtr, sumPtr, l.q, l.scales, l.negzs, outPtr, l.groups, bpg, XB / chunk,
      l.outFeatures / 8, accumulate, l.bias], nt);
  }

  override dispose(): void {
    super.dispose();
    this.engine?.dispose();
  }
}
