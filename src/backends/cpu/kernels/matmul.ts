/**
 * out[t, o] = Σ_i x[t, i] · w[o, i] (+ bias[o]) — llama2.c's `matmul(xout, x, w, n, d)` for a
 * batch of rows. w is f32 `[outFeatures, inFeatures]` row-major; x `[rows, inFeatures]`;
 * out `[rows, outFeatures]` (row stride outStride, so callers can fill a column slice).
 * Four accumulators per dot product break the dependency chain so V8 can keep the FPU busy.
 */
export function matmulRows(
  out: Float32Array, outStride: number, outCol: number,
  x: Float32Array, w: Float32Array, rows: number, inFeatures: number, outFeatures: number,
  bias?: Float32Array,
): void {
  for (let o = 0; o < outFeatures; o++) {
    const wOff = o * inFeatures;
    const b = bias ? bias[o] : 0;
    for (let t = 0; t < rows; t++) {
      const xOff = t * inFeatures;
      let a0 = 0, a1 = 0, a2 = 0, a3 = 0;
      let i = 0;
      for (; i + 3 < inFeatures; i += 4) {
        a0 += x[xOff + i] * w[wOff + i];
        a1 += x[xOff + i + 1] * w[wOff + i + 1];
        a2 += x[xOff + i + 2] * w[wOff + i + 2];
        a3 += x[xOff + i + 3] * w[wOff + i + 3];
      }
      for (; i < inFeatures; i++) a0 += x[xOff + i] * w[wOff + i];
      out[t * outStride + outCol + o] = a0 + a1 + a2 + a3 + b;
    }
  }
}
