/**
 * H = 2/n · Σ_s X_sᵀX_s on the GPU (n samples, each X_s `[rows, cols]` fp16 on the device), the
 * device twin of hessian.ts's HessianAccumulator. Each sample is transposed to Xᵀ `[cols, kPad]` and
 * its Gram matrix added by the tensor-core GEMM with fp16 inputs and f32 accumulators, lower-triangle
 * tiles only; finish() scales and mirrors. fp16 inputs are no loss here: the GEMMs that produce the
 * linears' inputs take them in fp16 too (and GPTQ-for-LLaMa runs the whole model in fp16); the sums
 * over up to 2048 tokens per sample and the per-sample accumulation are f32.
 */
import type { DevicePtr } from '../../backends/cuda/driver.js';
import { f32, i32, ptr } from '../../backends/cuda/kernelArgs.js';
import type { QuantGpu } from './gpu.js';
import { gemmF16, transposeHalf } from './ops.js';

export class DeviceHessian {
  /** [cols, cols] f32: lower-triangle sums until finish(), then H (full) */
  readonly h: DevicePtr;
  private readonly xt: DevicePtr; // [maxCols, kPad] fp16
  private readonly kPad: number;
  private samples = 0;
  private finished = false;
  private n: number;

  /**
   * @param maxCols the widest input this accumulator will see (reset() picks the width of each use)
   * @param maxRows tokens per sample
   */
  constructor(private readonly g: QuantGpu, readonly maxCols: number, readonly maxRows: number) {
    this.kPad = Math.ceil(maxRows / 8) * 8;
    this.h = g.alloc(maxCols * maxCols * 4, `a Hessian (${maxCols}²)`);
    this.xt = g.alloc(maxCols * this.kPad * 2, 'the transposed inputs of a Hessian');
    this.n = maxCols;
    this.reset(maxCols);
  }

  get cols(): number { return this.n; }
  get nsamples(): number { return this.samples; }

  /** Starts a new sum over `cols`-wide inputs. */
  reset(cols: number): void {
    if (cols > this.maxCols) throw new RangeError(`DeviceHessian: ${cols} columns, made for ${this.maxCols}`);
    this.n = cols;
    this.samples = 0;
    this.finished = false;
    this.g.zero(this.h, cols * cols * 4);
  }

  /** One sample's inputs x `[rows, cols]` fp16. */
  add(x: DevicePtr, rows: number): void {
    if (this.finished) throw new Error('DeviceHessian: add after finish()');
    if (rows > this.maxRows) throw new RangeError(`DeviceHessian: ${rows} rows, made for ${this.maxRows}`);
    const n = this.n, k = Math.ceil(rows / 8) * 8;
    transposeHalf(this.g, this.xt, this.kPad, x, rows, n, k);
    gemmF16(this.g, this.h, n, this.xt, this.kPad, this.xt, this.kPad, n, n, k, true, true);
    this.samples++;
  }

  /** Scales by 2/n and mirrors the lower triangle: `h` is then H, full and symmetric (call once). */
  finish(): DevicePtr {
    if (!this.finished) {
      const n = this.n;
      const f = this.samples > 0 ? 2 / this.samples : 0;
      this.g.launch('qz_h_finish', { x: Math.ceil(n / 256), y: n }, { x: 256 }, [ptr(this.h), i32(n), f32(f)]);
      this.finished = true;
    }
    return this.h;
  }

  /** H as Float64 (events for tests; n² values). */
  download(): Float64Array {
    const n = this.n;
    const out = this.g.download(new Float32Array(n * n), this.finish());
    return Float64Array.from(out);
  }
}
