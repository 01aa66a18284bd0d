/**
 * out[t, o] = Σ_i x[t, i] · w[o, i] (+ bias[o]) — llama2.c's `matmul(xout, x, w, n, d)` for a
 * batch of rows. w is f32 `[outFeatures, inFeatures]` row-major; x `[rows, inFeatures]`;
 * out `[rows, outFeatures]` with row stride `outStride` starting at column `outCol`, so callers
 * can fill a column slice. Rows are taken four at a time against one weight row: each weight
 * load then feeds four multiply-adds, which roughly doubles V8's throughput over a plain dot.
 */
export function matmulRows(
  out: Float32Array, outStride: number, outCol: number,
  x: Float32Array, w: Float32Array, rows: number, inFeatures: number, outFeatures: number,
  bias?: Float32Array,
): void {
  const n = inFeatures;
  for (let o = 0; o < outFeatures; o++) {
    const wOff = o * n;
    const b = bias ? bias[o] : 0;
    let t = 0;
    for (; t + 3 < rows; t += 4) {
      const x0 = t * n, x1 = x0 + n, x2 = x1 + n, x3 = x2 + n;
      let a0 = 0, a1 = 0, a2 = 0, a3 = 0;
      for (let i = 0; i < n; i++) {
        const wi = w[wOff + i];
        a0 += x[x0 + i] * wi;
        a1 += x[x1 + i] * wi;
        a2 += x[x2 + i] * wi;
        a3 += x[x3 + i] * wi;
      }
      const base = t * outStride + outCol + o;
      out[base] = a0 + b;
      out[base + outStride] = a1 + b;
      out[base + 2 * outStride] = a2 + b;
      out[base + 3 * outStride] = a3 + b;
    }
    for (; t < rows; t++) {
      const xOff = t * n;
      let a0 = 0, a1 = 0, a2 = 0, a3 = 0;
      let i = 0;
      for (; i + 3 < n; i += 4) {
        a0 += x[xOff + i] * w[wOff + i];
        a1 += x[xOff + i + 1] * w[wOff + i + 1];
        a2 += x[xOff + i + 2] * w[wOff + i + 2];
        a3 += x[xOff + i + 3] * w[wOff + i + 3];
      }
      for (; i < n; i++) a0 += x[xOff + i] * w[wOff + i];
      out[t * outStride + outCol + o] = a0 + a1 + a2 + a3 + b;
    }
  }
}
