/**
 * Launch plan of the split attention (attention.cu): how many blocks per (head, row) share the
 * positions. The kernel reads the live length n on the device and deals tiles of attentionTile(d)
 * positions round-robin to the warps of the blocks that hold positions (ceil(n / chunk) of them,
 * chunk = 4 warps x 1 tile); the rest exit at once. So one plan serves every length up to
 * maxPositions (inside a captured graph: the graph's position bucket), and it only has to fill the
 * GPU once: splits x heads x rows ≈ the blocks resident at once, capped by what maxPositions can use.
 */
export interface AttentionPlan {
  /** blocks per (head, row): grid.y */
  readonly splits: number;
}

const WARPS = 4;
/** ATTN_MIN_BLOCKS in attention.cu: attn_split_<d> keeps to 102 registers so 5 blocks of 128 threads fit an SM */
const BLOCKS_PER_SM = 5;
/** ATTN_MAX_SPLITS in attention.cu: the merging block holds every split's (m, l), one per thread */
export const MAX_SPLITS = 128;

/** Positions per warp tile of attn_split_<d> (AttnTile<d, 8>: 8 rows per group of d/8 lanes): 32, 16, 8. */
export function attentionTile(headDim: number): number {
  return (8 * 256) / headDim;
}

export function planAttention(maxPositions: number, rows: number, heads: number, smCount: number, headDim: number): AttentionPlan {
  const chunk = WARPS * attentionTile(headDim);
  const rounds = Math.max(1, Math.ceil(maxPositions / chunk));
  const fill = Math.floor((BLOCKS_PER_SM * smCount) / (rows * heads));
  return { splits: Math.max(1, Math.min(fill, rounds, MAX_SPLITS)) };
}

/**
 * Decode graphs are captured per bucket of positions (the step's last position below 128, 512, or
 * anything up to the cache size), so a short context does not launch the blocks of a long one.
 */
export function positionBucket(endPos: number): number {
  return endPos <= 128 ? 128 : endPos <= 512 ? 512 : Infinity;
}

/** dynamic shared memory of attn_flash_<d> (attention_flash.cu): K and V tiles of 64 positions, double-buffered, rows padded by 8 halves */
export function flashShared(d: number): number {
  return 2 * 2 * 64 * (d + 8) * 2;
}
/**
 * dynamic shared memory of attn_flash_wg_128 (attention_flash_wg.cu): 1 KB of alignment for the 128-byte swizzle, the
 * fp16 Q tile of 128 rows, and FLASH_WG_STAGES K/V stages of 64 positions
 */
export const FLASH_WG_STAGES = 2;
export function flashWgShared(): number {
  return 1024 + 128 * 128 * 2 + FLASH_WG_STAGES * 2 * 64 * 128 * 2;
}
/** attn_flash_wg_128's grid for `rows` query rows: (head, query tile of 128 rows); 256 threads */
export function flashWgGrid(rows: number, heads: number): { x: number; y: number } {
  return { x: heads, y: Math.ceil(rows / 128) };
}
/** attn_flash_<d>'s grid for `rows` query rows: (head, query tile of 64 rows) */
export function flashGrid(rows: number, heads: number): { x: number; y: number } {
  return { x: heads, y: Math.ceil(rows / 64) };
}
