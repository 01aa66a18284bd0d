/**
 * Row argmax, the reference of argmax_f32 / argmax_rows_f32 (cuda/kernels/argmax.cu):
 *   out[r] = min { i : x[r, i] = max_j x[r, j] }
 * ties go to the lowest index, NaN is never chosen over a number, and a row with nothing above
 * -Infinity (all -Infinity or NaN) gives 0, as the kernel's reduction does.
 */
export function argmaxRows(out: Int32Array, x: Float32Array, rows: number, cols: number): void {
  for (let r = 0; r < rows; r++) out[r] = argmaxRow(x, r * cols, cols);
}

/** argmax of x[base .. base + cols) by the rule above (its index within the row). */
export function argmaxRow(x: Float32Array, base: number, cols: number): number {
  let best = 0;
  let bestValue = -Infinity;
  for (let i = 0; i < cols; i++) {
    const v = x[base + i];
    if (v > bestValue) { // strict: an equal value later in the row never replaces the earlier one
      bestValue = v;
      best = i;
    }
  }
  return best;
}
