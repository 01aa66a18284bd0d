import { gramLowerAccumulate } from './kernels.js';

/**
 * H = 2/n · Σ_s X_sᵀ X_s over the calibration samples s (n = number of samples, each X_s
 * `[seqlen, cols]`), as GPTQ-for-LLaMa's `add_batch` builds it (it counts sequences, not tokens,
 * and keeps a running rescaled mean; summing in Float64 and scaling once is the same number).
 * The scale only matters for reconstruction errors: ‖(W − Q)X‖² = n/2 · Σ_o Δ_o H Δ_oᵀ.
 */
export class HessianAccumulator {
  private readonly sum: Float64Array; // [cols, cols], lower triangle
  private scratch = new Float32Array(0);
  private samples = 0;

  constructor(readonly cols: number) {
    this.sum = new Float64Array(cols * cols);
  }

  get nsamples(): number {
    return this.samples;
  }

  /** One sample's inputs `[rows, cols]`. */
  add(x: Float32Array, rows: number): void {
    if (this.scratch.length < rows * this.cols) this.scratch = new Float32Array(rows * this.cols);
    gramLowerAccumulate(this.sum, x, rows, this.cols, this.scratch);
    this.samples++;
  }

  /** H `[cols, cols]`, full symmetric. */
  hessian(): Float64Array {
    const n = this.cols;
    const h = new Float64Array(n * n);
    const f = this.samples > 0 ? 2 / this.samples : 0;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j <= i; j++) {
        const v = this.sum[i * n + j] * f;
        h[i * n + j] = v;
        h[j * n + i] = v;
      }
    }
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
