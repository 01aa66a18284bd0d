/** Plain reference kernels for the small per-token ops (llama2.c style). */

/** out[t, :] = x[t, :] / sqrt(mean(x[t, :]²) + eps) · weight */
export function rmsNorm(out: Float32Array, x: Float32Array, weight: Float32Array, eps: number, rows: number, dim: number): void {
  for (let t = 0; t < rows; t++) {
    const off = t * dim;
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[off + i] * x[off + i];
    const inv = 1 / Math.sqrt(ss / dim + eps);
    for (let i = 0; i < dim; i++) out[off + i] = x[off + i] * inv * weight[i];
  }
}

/**
 * Rotary embedding, Hugging Face convention: within each head the pairs are (i, i + half), not
 * adjacent elements (Meta's original interleaving); HF checkpoints have q/k rows permuted to match.
 * angle = pos · theta^(−2i/headDim), computed in f32 like transformers' inv_freq.
 */
export function rope(x: Float32Array, rows: number, heads: number, headDim: number, startPos: number, theta: number, rowStride: number): void {
  const half = headDim / 2;
  const invFreq = inverseFrequencies(headDim, theta);
  for (let t = 0; t < rows; t++) {
    const pos = startPos + t;
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(pos * invFreq[i]);
      const c = Math.cos(angle), s = Math.sin(angle);
      for (let h = 0; h < heads; h++) {
        const off = t * rowStride + h * headDim;
        const a = x[off + i], b = x[off + i + half];
        x[off + i] = a * c - b * s;
        x[off + i + half] = b * c + a * s;
      }
    }
  }
}

/** theta^(−2i/headDim) for i < headDim/2, computed once per (headDim, theta): a decode step allocates nothing. */
const invFreqCache = new Map<string, Float32Array>();
function inverseFrequencies(headDim: number, theta: number): Float32Array {
  const key = `${headDim}:${theta}`;
  let f = invFreqCache.get(key);
  if (!f) {
    f = new Float32Array(headDim / 2);
    for (let i = 0; i < f.length; i++) f[i] = 1 / Math.pow(theta, (2 * i) / headDim);
    invFreqCache.set(key, f);
  }
  return f;
}

/** out = silu(gate) · up, silu(v) = v / (1 + e^−v) */
export function swiglu(out: Float32Array, gate: Float32Array, up: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) {
    const g = gate[i];
    out[i] = (g / (1 + Math.exp(-g))) * up[i];
  }
}
