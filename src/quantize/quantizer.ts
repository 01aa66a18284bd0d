import { floatToHalf, halfToFloat } from '../formats/safetensors.js';

/**
 * Min-max affine quantization per output channel, as GPTQ-for-LLaMa's `Quantizer`
 * (perchannel=True, mse=False): the range always includes 0; symmetric mode mirrors it and puts
 * the zero point mid-grid; an all-zero channel gets the range [−1, 1].
 *   scale = (xmax − xmin) / maxq,  zero = round(−xmin / scale)  (sym: (maxq + 1) / 2)
 *   q = clamp(round(w / scale) + zero, 0, maxq),  ŵ = scale · (q − zero)
 * One deliberate difference: the scale is rounded to fp16 before the zero point and q are
 * derived, because fp16 is what the file stores. GPTQ then feeds back the error of the weights a
 * loader will really see, and packing needs no re-rounding.
 */
export interface QuantGrid {
  readonly bits: number;
  /** 2^bits − 1 */
  readonly maxq: number;
  readonly sym: boolean;
}

export function quantGrid(bits: number, sym: boolean): QuantGrid {
  return { bits, maxq: 2 ** bits - 1, sym };
}

/** Per-channel parameters of one group: `[channels]` each. */
export interface ChannelParams {
  readonly scale: Float64Array;
  readonly zero: Float64Array;
}

export function allocParams(channels: number): ChannelParams {
  return { scale: new Float64Array(channels), zero: new Float64Array(channels) };
}

/** torch.round: halves go to the even neighbour. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The value `v` as the nearest fp16, back in a double. */
export function toHalfPrecision(v: number): number {
  return halfToFloat(floatToHalf(v));
}

const SMALLEST_HALF = 2 ** -24;

/** Scale and zero of one channel from its min and max. */
export function channelParams(grid: QuantGrid, min: number, max: number): { scale: number; zero: number } {
  let xmin = Math.min(min, 0);
  let xmax = Math.max(max, 0);
  if (grid.sym) {
    xmax = Math.max(Math.abs(xmin), xmax);
    if (xmin < 0) xmin = -xmax;
  }
  if (xmin === 0 && xmax === 0) {
    xmin = -1;
    xmax = 1;
  }
  // fp16 can flush a tiny range to 0, which would divide by zero below
  const scale = Math.max(toHalfPrecision(Math.fround((xmax - xmin) / grid.maxq)), SMALLEST_HALF);
  if (grid.sym) return { scale, zero: (grid.maxq + 1) / 2 };
  const zero = Math.min(grid.maxq, roundHalfEven(-xmin / scale));
  if (zero >= 1) return { scale, zero };
  // The GPTQ-for-LLaMa v1 file stores zero − 1, so a zero point of 0 cannot be written (it would
  // read back as 2^bits). A range starting at (about) 0 is instead covered as [−scale, (maxq−1)·scale].
  const shifted = Math.max(toHalfPrecision(Math.fround(xmax / (grid.maxq - 1))), SMALLEST_HALF);
  return { scale: shifted, zero: 1 };
}

/** W `[rows, cols]` as Float64 `[cols, rows]`: the layout the quantizers hold weights in (one input column per row). */
export function transposeF64(w: Float32Array, rows: number, cols: number): Float64Array {
  const t = new Float64Array(rows * cols);
  for (let o = 0; o < rows; o++) {
    const off = o * cols;
    for (let i = 0; i < cols; i++) t[i * rows + o] = w[off + i];
  }
  return t;
}

/**
 * Parameters of a group of input columns, for weights held transposed: `wt` is `[cols, rows]`
 * (row j of wt is input column j of W), and the group is columns [c0, c1).
 */
export function findGroupParams(grid: QuantGrid, wt: Float64Array, rows: number, c0: number, c1: number, out: ChannelParams): void {
  const min = new Float64Array(rows).fill(Infinity);
  const max = new Float64Array(rows).fill(-Infinity);
  for (let c = c0; c < c1; c++) {
    const off = c * rows;
    for (let o = 0; o < rows; o++) {
      const v = wt[off + o];
      if (v < min[o]) min[o] = v;
      if (v > max[o]) max[o] = v;
    }
  }
  for (let o = 0; o < rows; o++) {
    const p = channelParams(grid, min[o], max[o]);
    out.scale[o] = p.scale;
    out.zero[o] = p.zero;
  }
}

/** The integer level of `w`: clamp(round(w / scale) + zero, 0, maxq). */
export function quantizeLevel(w: number, scale: number, zero: number, maxq: number): number {
  const q = roundHalfEven(w / scale) + zero;
  return q < 0 ? 0 : q > maxq ? maxq : q;
}
