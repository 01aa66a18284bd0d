/** Helpers shared by the quantize unit tests. */

/** A small seeded generator (numerical recipes LCG), uniform in [0, 1): enough for test data. */
export function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}
