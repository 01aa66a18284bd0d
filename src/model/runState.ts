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
  readonly logits: Activation; // [rows, vocab]
}

export function allocRunState(backend: Backend, config: LlamaConfig, rows: number): RunState {
  const dim = config.hiddenSize;
  const headDim = dim / config.numHeads;
  const kvDim = config.numKvHeads * headDim;
  const ffn = config.intermediateSize;
  const a = (cols: number, r = rows): Activation => backend.allocActivation(r, cols);
  return {
    rows,
    ids: new Int32Array(rows),
    x: a(dim), xb: a(dim), q: a(dim), k: a(kvDim), v: a(kvDim), attn: a(dim), proj: a(dim),
    gate: a(ffn), up: a(ffn), hidden: a(ffn), last: a(dim, 1), logits: a(config.vocabSize),
  };
}
