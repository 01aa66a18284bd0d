/**
 * Launch plan of the split attention (attention.cu): how many position splits, how long each.
 * Decode (one row) splits the context in chunks of 128 positions so a long context spreads over
 * the SMs; inside a captured graph the plan covers the graph's position bucket (positions live on
 * the device and blocks past the current length exit at once). Many rows already fill the GPU: fewer splits.
 */
export interface AttentionPlan {
  readonly chunk: number;
  readonly splits: number;
}

const CHUNK = 128; // 4 warps x 32 positions
/** ATTN_MAX_SPLITS in attention.cu: the combining block holds every split's (m, l) in shared memory */
export const MAX_SPLITS = 64;

export function planAttention(maxPositions: number, rows: number, heads: number, smCount: number): AttentionPlan {
  const tiles = Math.max(1, Math.ceil(maxPositions / CHUNK));
  const wanted = Math.min(MAX_SPLITS, rows === 1 ? tiles : Math.max(1, Math.min(tiles, Math.ceil((2 * smCount) / (rows * heads)))));
  const chunk = CHUNK * Math.ceil(tiles / wanted);
  return { chunk, splits: Math.ceil(tiles * CHUNK / chunk) };
}

/**
 * Decode graphs are captured per bucket of positions (the step's last position below 128, 512, or
 * anything up to the cache size), so a short context does not launch the blocks of a long one.
 */
export function positionBucket(endPos: number): number {
  return endPos <= 128 ? 128 : endPos <= 512 ? 512 : Infinity;
}
