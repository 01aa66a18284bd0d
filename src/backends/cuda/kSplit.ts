/**
 * How the split-K GEMV kernels (gemv_q4, gemv_q4_multi, gemv_q4_rows, gemv_q8) divide K among the blocks of one
 * output tile: one rule with each kernel's limits as parameters.
 */

/**
 * K of at most this many 128-value slices runs as one range per tile: tiny models' linears (the embedded
 * tiny-vicuna's 2 and 6 slices) then need no split-K atomics, so their sums do not depend on block order and
 * their decode is bit-reproducible. 7B / 13B have 32+ slices and split anyway.
 */
export const SINGLE_RANGE_SLICES = 8;

export interface KSplitLimits {
  /** blocks per SM the grid aims at (one wave): the kernel's __launch_bounds__ minimum */
  readonly blocksPerSm: number;
  /** fewest slices per block (the one-token kernels: one per warp, as fewer leaves warps idle) */
  readonly minSlices: number;
  /** most slices per block: what the kernel stages of x in shared memory */
  readonly maxSlices: number;
  /** most K ranges per tile, where the kernel has such a limit (each range then takes more slices) */
  readonly maxRanges?: number;
}

/**
 * K values per block: splits so that tiles × splits ≈ one wave of `blocksPerSm` blocks per SM, K split as
 * evenly as its 128-value slices allow, clamped to the kernel's limits. Splitting evenly rather than in
 * multiples of 4 slices (which left each tile's last range short: 13B q/k/v 12, 12, 12, 4) measured +1.5–1.8%
 * on act-order decode (bench/cudaNotes.md, ninth pass); one wave matters more than the range length (a
 * second, nearly empty wave costs a whole block time again).
 */
export function kPerBlock(K: number, tiles: number, smCount: number, limits: KSplitLimits, roundSlicesTo = 1): number {
  const slices = Math.ceil(K / 128);
  if (slices <= SINGLE_RANGE_SLICES) return slices * 128;
  const splits = Math.max(1, Math.floor((smCount * limits.blocksPerSm) / tiles));
  let per = Math.max(Math.ceil(slices / splits), limits.minSlices);
  per = Math.ceil(per / roundSlicesTo) * roundSlicesTo;
  per = Math.min(per, limits.maxSlices);
  if (limits.maxRanges !== undefined) per = Math.max(per, Math.ceil(slices / limits.maxRanges));
  if (per > limits.maxSlices) {
    throw new RangeError(`K ${K} needs ${per} slices per block, more than the kernel stages (${limits.maxSlices}): too wide for the split-K GEMVs`);
  }
  return per * 128;
}
