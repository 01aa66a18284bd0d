import type { QuantEngine } from './engine.js';
import { gramLowerAccumulate } from './kernels.js';

/**
 * H = 2/n · Σ_s X_sᵀ X_s over the calibration samples s (n = number of samples, each X_s
 * `[seqlen, cols]`), as GPTQ-for-LLaMa's `add_batch` builds it (it counts sequences, not tokens,
 * and keeps a running rescaled mean; summing in Float64 and scaling once is the same number).
 * The scale only matters for reconstruction errors: ‖(W − Q)X‖² = n/2 · Σ_o Δ_o H Δ_oᵀ.
 */
export class HessianAccumulator {
  private readonly sum: Float64Array; // [cols, cols], lower triangle (no engine)
  private scratch = new Float32Array(0);
  private samples = 0;
  private sumPtr = 0;
  private result: Float64Array | undefined;

  /**
   * With an engine, the sum lives in its memory under `slot` (accumulators that are filled and
   * read one after another may share a slot: it is cleared at the first sample, not here).
   */
  constructor(readonly cols: number, private readonly engine?: QuantEngine, private readonly slot = 'hessian') {
    this.sum = engine ? new Float64Array(0) : new Float64Array(cols * cols);
  }

  get nsamples(): number {
    return this.samples;
  }

  /** One sample's inputs `[rows, cols]`. */
  add(x: Float32Array, rows: number): void {
    if (this.result) throw new Error('HessianAccumulator: add after hessian()');
    const e = this.engine;
    if (!e) {
      if (this.scratch.length < rows * this.cols) this.scratch = new Float32Array(rows * this.cols);
      gramLowerAccumulate(this.sum, x, rows, this.cols, this.scratch);
      this.samples++;
      return;
    }
    const n = this.cols;
    if (this.samples === 0) {
      this.sumPtr = e.slot(this.slot, n * n * 8);
      e.f64(this.sumPtr, n * n).fill(0);
    }
    // X transposed, rows padded to a multiple of 4 with zeros: each entry is a contiguous dot product
    const kPad = (rows + 3) & ~3;
    const xtPtr = e.slot('hessian.xt', n * kPad * 4);
    const xt = e.f32(xtPtr, n * kPad);
    for (let t = 0; t < rows; t++) {
      const off = t * n;
      for (let i = 0; i < n; i++) xt[i * kPad + t] = x[off + i];
    }
    if (kPad > rows) for (let i = 0; i < n; i++) xt.fill(0, i * kPad + rows, (i + 1) * kPad);
    e.gram(this.sumPtr, xtPtr, n, kPad);
    this.samples++;
  }

  /**
   * H `[cols, cols]`, full symmetric, made in place from the sums (no second n² buffer): call it
   * after the last add. With an engine the result is a view of the engine's memory, valid until
   * the slot is filled again.
   */
  hessian(): Float64Array {
    const n = this.cols;
    if (this.result) return this.result;
    const h = this.engine ? (this.samples > 0 ? this.engine.f64(this.sumPtr, n * n) : new Float64Array(n * n)) : this.sum;
    const f = this.samples > 0 ? 2 / this.samples : 0;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j <= i; j++) {
        const v = h[i * n + j] * f;
        h[i * n + j] = v;
        h[j * n + i] = v;
      }
    }
    this.result = h;
    return h;
  }
}

/** ‖(W − Q)X‖² summed over all calibration tokens, from H: n/2 · Σ_o (W−Q)_o H (W−Q)_oᵀ. W, Q `[rows, cols]`. */
export function reconstructionError(w: Float32Array, q: Float32Array, h: Float64Array, rows: number, cols: number, nsamples: number): number {
  const d = new Float64Array(cols);
  let total = 0;
  for (let o = 0; o < rows; o++) {
    for (let i = 0; i < cols; i++) d[i] = w[o * cols + i] - q[o * cols + i];
    for (let i = 0; i < cols; i++) {
      if (d[i] === 0) continue;
      let s = 0;
      const r = i * cols;
      for (let j = 0; j < cols; j++) s += h[r + j] * d[j];
      total += d[i] * s;
    }
  }
  return (total * nsamples) / 2;
}
