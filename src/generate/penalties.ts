import type { SamplingOptions } from './samplingOptions.js';

type PenaltyOptions = Pick<SamplingOptions, 'repetitionPenalty' | 'presencePenalty' | 'frequencyPenalty' | 'repeatLastN'>;

/**
 * Apply the repetition, frequency and presence penalties in place to `logits` ([vocab]) for the
 * ids in the window (the last `repeatLastN` of `history`, or all of it when -1).
 * Each distinct id is penalized once: repetition first (HF RepetitionPenaltyLogitsProcessor /
 * llama.cpp: positive logits divided, negative multiplied), then OpenAI's
 * `logit − count × frequency − presence`.
 * `counts` ([vocab]) is caller-owned scratch that must be all zero; it is left all zero.
 */
export function applyPenalties(logits: Float32Array, history: readonly number[], o: PenaltyOptions, counts: Uint32Array): void {
  if (o.repetitionPenalty === 1 && o.presencePenalty === 0 && o.frequencyPenalty === 0) return;
  const len = history.length;
  const n = o.repeatLastN < 0 ? len : Math.min(o.repeatLastN, len);
  const start = len - n;
  const V = logits.length;
  for (let i = start; i < len; i++) {
    const id = history[i];
    if (id >= 0 && id < V) counts[id]++;
  }
  for (let i = start; i < len; i++) {
    const id = history[i];
    if (id < 0 || id >= V) continue;
    const c = counts[id];
    if (c === 0) continue; // already penalized
    counts[id] = 0;
    let l = logits[id];
    l = l > 0 ? l / o.repetitionPenalty : l * o.repetitionPenalty;
    logits[id] = l - c * o.frequencyPenalty - o.presencePenalty;
  }
}
