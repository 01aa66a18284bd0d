/**
 * What cudaDecodeProfile and cudaDecodeTrace do before the steps they time or trace: fill a model's KV cache to a
 * context with one prefill of fixed pseudo-random ids, then run `warm` greedy steps (the decode graph captures).
 */
import type { LlamaModel } from '../src/model/llama.js';

/** Returns the first position to decode at and the token to feed there; start ≤ window − warm − steps − 1. */
export async function warmDecode(model: LlamaModel, context: number, steps: number, warm: number, window: number): Promise<{ start: number; pos: number; id: number }> {
  const start = Math.min(context - 1, window - warm - steps - 1);
  if (start > 0) await model.forward(Array.from({ length: start }, (_, i) => (i * 7919 + 13) % model.vocabSize), 0);
  let id = 1;
  for (let i = 0; i < warm; i++) id = await model.forwardArgmax([id], start + i);
  return { start, pos: start + warm, id };
}
