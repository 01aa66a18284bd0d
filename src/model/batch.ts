import type { DeviceSampling } from '../backends/backend.js';
import { argmaxRow } from '../backends/cpu/kernels/argmax.js';

/**
 * Continuous batching at the model level: a model with several sequence slots (each its own KV
 * cache) decodes one token of several slots in one step (`decodeBatch`: one batched pass, or a few
 * slots' graphs in turn where the backend has graphs), and each slot can
 * be driven alone (the `slot` argument of forward / forwardArgmax / forwardSample).
 */

/** What a batched row hands back: the logits row, its argmax, or a draw (see `RowResult`). */
export type RowPick =
  | { readonly kind: 'logits' }
  /** argmax, lowest id on ties (all greedy rows of a step in one Backend.argmaxRows where the backend has it) */
  | { readonly kind: 'argmax' }
  /** a draw where the logits are (Backend.sample); the logits row when the backend cannot draw it */
  | { readonly kind: 'sample'; readonly sampling: DeviceSampling };

/** One row of a batched decode step: the next token of the sequence in `slot`, at position `pos`. */
export interface DecodeRow {
  readonly slot: number;
  readonly token: number;
  /** position of `token`: the slot's KV cache must hold positions 0..pos-1 of this sequence */
  readonly pos: number;
  /** default: logits */
  readonly pick?: RowPick;
}

/** A token id (argmax, or a device draw), or the row's logits `[vocab]` f32 on the host. */
export type RowResult = number | Float32Array;

/** A model with sequence slots that can run one batched decode step over several of them. */
export interface BatchedLm {
  readonly vocabSize: number;
  readonly contextLength: number;
  /** number of sequence slots (KV caches) */
  readonly sequences: number;
  /**
   * prompt rows one forward chunk runs: a caller feeding a prompt piece by piece in chunks of this
   * size runs exactly the passes one `forward` of the whole prompt would (absent: 256)
   */
  readonly chunkRows?: number;
  forward(tokens: readonly number[], startPos: number, slot?: number): Promise<Float32Array>;
  /** Fills the slot's KV cache with tokens at startPos.. and computes no logits. */
  feed(tokens: readonly number[], startPos: number, slot?: number): Promise<void>;
  forwardArgmax(tokens: readonly number[], startPos: number, slot?: number): Promise<number>;
  forwardSample(tokens: readonly number[], startPos: number, sampling: DeviceSampling, slot?: number): Promise<number | Float32Array>;
  /** One forward over all rows (distinct slots); results in row order. */
  decodeBatch(rows: readonly DecodeRow[]): Promise<RowResult[]>;
}

/**
 * argmax of `row` as `forwardArgmax` computes it on the host, by the rule of Backend.argmax /
 * argmaxRows: lowest id on ties, NaN never chosen over a number, 0 when nothing is above -Infinity.
 */
export function hostArgmax(row: Float32Array): number {
  return argmaxRow(row, 0, row.length);
}
