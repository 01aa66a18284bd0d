/**
 * Causal attention of `rows` query rows over a KV cache.
 * q:    [rows, heads·headDim]
 * kc/vc: one layer's cache, [maxSeq, kvHeads·headDim]
 * out:  [rows, heads·headDim]
 * Row t (position startPos + t) attends to positions 0..startPos+t. Query head h reads KV head
 * h / (heads / kvHeads) (grouped-query attention). Scores use a numerically stable softmax.
 * `scores` is caller-owned scratch of at least startPos + rows floats.
 */
export function attention(
  out: Float32Array, q: Float32Array, kc: Float32Array, vc: Float32Array,
  rows: number, startPos: number, heads: number, kvHeads: number, headDim: number, scores: Float32Array,
): void {
  const qStride = heads * headDim;
  const kvStride = kvHeads * headDim;
  const group = heads / kvHeads;
  const scale = 1 / Math.sqrt(headDim);
  for (let t = 0; t < rows; t++) {
    const n = startPos + t + 1;
    for (let h = 0; h < heads; h++) {
      const qOff = t * qStride + h * headDim;
      const kvOff = Math.floor(h / group) * headDim;
      let max = -Infinity;
      for (let p = 0; p < n; p++) {
        const kOff = p * kvStride + kvOff;
        let dot = 0;
        for (let i = 0; i < headDim; i++) dot += q[qOff + i] * kc[kOff + i];
        const s = dot * scale;
        scores[p] = s;
        if (s > max) max = s;
      }
      let sum = 0;
      for (let p = 0; p < n; p++) {
        const e = Math.exp(scores[p] - max);
        scores[p] = e;
        sum += e;
      }
      const oOff = t * qStride + h * headDim;
      for (let i = 0; i < headDim; i++) out[oOff + i] = 0;
      for (let p = 0; p < n; p++) {
        const wgt = scores[p] / sum;
        const vOff = p * kvStride + kvOff;
        for (let i = 0; i < headDim; i++) out[oOff + i] += wgt * vc[vOff + i];
      }
    }
  }
}
