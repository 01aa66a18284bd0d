import { halfToFloat } from '../../../formats/half.js';

/**
 * IEEE half → f32 through a 65,536-entry table of formats/half.ts's halfToFloat: the CPU backend
 * converts fp16 weights (embedding rows, scales) on the fly, and a table lookup beats bit
 * fiddling per element.
 */
export const HALF_TO_FLOAT: Float32Array = (() => {
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) table[h] = halfToFloat(h);
  return table;
})();

/** Convert a whole fp16 buffer to f32. */
export function halfArrayToFloat(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = HALF_TO_FLOAT[src[i]];
  return out;
}
