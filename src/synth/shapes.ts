/** LLaMA-1 shapes for synthetic checkpoints (hidden, ffn, layers, heads, vocab). */
export interface LlamaShape {
  readonly hidden: number;
  readonly ffn: number;
  readonly layers: number;
  readonly heads: number;
  readonly vocab: number;
  /** key/value heads where fewer than `heads` (grouped-query attention, as LLaMA-2 70B); default `heads` */
  readonly kvHeads?: number;
}

export const SHAPES: Readonly<Record<string, LlamaShape>> = {
  'llama-7b': { hidden: 4096, ffn: 11008, layers: 32, heads: 32, vocab: 32000 },
  'llama-13b': { hidden: 5120, ffn: 13824, layers: 40, heads: 40, vocab: 32000 },
  'llama-33b': { hidden: 6656, ffn: 17920, layers: 60, heads: 52, vocab: 32000 },
};
