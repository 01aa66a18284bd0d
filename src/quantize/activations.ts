import { decodeHalf, encodeHalf } from './half16.js';

/** How the calibration activations are kept between passes. */
export type ActivationDtype = 'f32' | 'f16';

/**
 * `auto`: f32 while the two activation buffers (inputs and the true-sequential spare) take at
 * most this much, else fp16 (half the memory; GPTQ-for-LLaMa itself runs the model in fp16).
 */
export const AUTO_F32_LIMIT_BYTES = 2 * 1024 ** 3;

export function chooseActivationDtype(want: ActivationDtype | 'auto', nsamples: number, seqlen: number, dim: number): ActivationDtype {
  if (want !== 'auto') return want;
  return 2 * nsamples * seqlen * dim * 4 <= AUTO_F32_LIMIT_BYTES ? 'f32' : 'f16';
}

/** `count` samples of `perSample` values, read into and written from f32 working buffers. */
export class Activations {
  private constructor(readonly dtype: ActivationDtype, readonly perSample: number, private readonly data: (Float32Array | Uint16Array)[]) {}

  static alloc(dtype: ActivationDtype, count: number, perSample: number): Activations {
    return new Activations(dtype, perSample, Array.from({ length: count }, () => (dtype === 'f16' ? new Uint16Array(perSample) : new Float32Array(perSample))));
  }

  /** Wraps arrays of the dtype's element type (f32: Float32Array, f16: Uint16Array of half bits). */
  static of(dtype: ActivationDtype, perSample: number, data: (Float32Array | Uint16Array)[]): Activations {
    for (const d of data) {
      if (d.length !== perSample || (dtype === 'f16') !== d instanceof Uint16Array) throw new TypeError('activation arrays do not match the dtype or size');
    }
    return new Activations(dtype, perSample, data);
  }

  get count(): number {
    return this.data.length;
  }

  get bytesPerValue(): number {
    return this.dtype === 'f16' ? 2 : 4;
  }

  /** Total bytes held. */
  get bytes(): number {
    return this.data.length * this.perSample * this.bytesPerValue;
  }

  /** dst ← sample s (first `n` values). */
  read(s: number, dst: Float32Array, n = this.perSample): void {
    const d = this.data[s];
    if (d instanceof Uint16Array) decodeHalf(d, dst, n);
    else dst.set(n === d.length ? d : d.subarray(0, n));
  }

  /** sample s ← src (first `n` values). */
  write(s: number, src: Float32Array, n = this.perSample): void {
    const d = this.data[s];
    if (d instanceof Uint16Array) encodeHalf(src, d, n);
    else d.set(n === src.length ? src : src.subarray(0, n));
  }

  /** The raw bytes of sample s (checkpoints). */
  sampleBytes(s: number): Uint8Array {
    const d = this.data[s];
    return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
  }
}
