import type { Activation, Backend } from '../backends/backend.js';
import type { LlamaConfig } from '../formats/hfConfig.js';

/**
 * Activation buffers for one forward chunk of up to `rows` tokens, allocated once when the
 * model is created (llama2.c's RunState) so that a decode step allocates nothing.
 */
export interface RunState {
  readonly rows: number;
  readonly ids: Int32Array; // [rows] token ids of the chunk being run
  readonly x: Activation; // [rows, dim] residual stream
  readonly xb: Activation; // [rows, dim] normed input of a sub-block
  readonly q: Activation; // [rows, heads·headDim]
  readonly k: Activation; // [rows, kvHeads·headDim]
  readonly v: Activation; // [rows, kvHeads·headDim]
  readonly attn: Activation; // [rows, heads·headDim]
  readonly proj: Activation; // [rows, dim] output of o_proj / down_proj
  readonly gate: Activation; // [rows, ffn]
  readonly up: Activation; // [rows, ffn]
  readonly hidden: Activation; // [rows, ffn] silu(gate)·up
  readonly last: Activation; // [1, dim] last position, normed, before lm_head
  readonly logits: Activation; // [logitsRows, vocab]
  /** rows of `logits`: at most `rows`; a chunk's logits of more rows go through lm_head in pieces (forwardAll) */
  readonly logitsRows: number;
  /** [logitsRows, dim]: a piece of xb for lm_head when logitsRows < rows, else null */
  readonly lmIn: Activation | null;
}

/**
 * Most rows of logits a run state holds. A 2048-row chunk's logits would take rows · vocab f32 (262 MB for
 * LLaMA's 32,000 tokens, about 2.6% of a 13B model's 10 GB on the GPU) for what only forwardAll (perplexity)
 * reads; it computes them in pieces of this many rows instead.
 */
export const MAX_LOGITS_ROWS = 256;

/** @param logitsRows rows of logits (and of lmIn), at most `rows` (default: MAX_LOGITS_ROWS) */
export function allocRunState(backend: Backend, config: LlamaConfig, rows: number, logitsRows = Math.min(rows, MAX_LOGITS_ROWS)): RunState {
  if (!Number.isInteger(logitsRows) || logitsRows < 1 || logitsRows > rows) throw new RangeError(`logitsRows must be an integer in [1, ${rows}], got ${logitsRows}`);
  const dim = config.hiddenSize;
  const headDim = dim / config.numHeads;
  const kvDim = config.numKvHeads * headDim;
  const ffn = config.intermediateSize;
  const a = (cols: number, r = rows): Activation => backend.allocActivation(r, cols);
  return {
    rows,
    ids: new Int32Array(rows),
    x: a(dim), xb: a(dim), q: a(dim), k: a(kvDim), v: a(kvDim), attn: a(dim), proj: a(dim),
    gate: a(ffn), up: a(ffn), hidden: a(ffn), last: a(dim, 1), logits: a(config.vocabSize, logitsRows),
    logitsRows, lmIn: logitsRows < rows ? a(dim, logitsRows) : null,
  };
}
