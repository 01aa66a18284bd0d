/**
 * Launch plan of the split attention (attention.cu): how many position splits, how long each.
 * Decode (one row) splits the context in chunks of 128 positions so a long context spreads over
 * the SMs; inside a captured graph the plan covers the whole cache (positions live on the device
 * and blocks past the current length exit at once). Many rows already fill the GPU: fewer splits.
 */
export interface AttentionPlan {
  readonly chunk: number;
  readonly splits: number;
}

const CHUNK = 128; // 4 warps x 32 positions

export function planAttention(maxPositions: number, rows: number, heads: number, smCount: number): AttentionPlan {
  const tiles = Math.max(1, Math.ceil(maxPositions / CHUNK));
  const wanted = rows === 1 ? Math.min(tiles, 64) : Math.max(1, Math.min(tiles, Math.ceil((2 * smCount) / (rows * heads))));
  const chunk = CHUNK * Math.ceil(tiles / wanted);
  return { chunk, splits: Math.ceil(tiles * CHUNK / chunk) };
}
