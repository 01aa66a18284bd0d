/**
 * IEEE half → f32 through a 65,536-entry table: the CPU backend converts fp16 weights
 * (embedding rows, scales) on the fly, and a table lookup beats bit fiddling per element.
 */
function decodeHalf(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24; // subnormal
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

export const HALF_TO_FLOAT: Float32Array = (() => {
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) table[h] = decodeHalf(h);
  return table;
})();

/** Convert a whole fp16 buffer to f32. */
export function halfArrayToFloat(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = HALF_TO_FLOAT[src[i]];
  return out;
}
