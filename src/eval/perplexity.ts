/**
 * Perplexity the way GPTQ-for-LLaMa's `llama_eval` measures it, so figures compare with the
 * papers and model cards: the token ids are BOS + one encode of the whole text, cut into
 * non-overlapping windows of `seqlen` from the start (a partial last window is dropped); in each
 * window, tokens 1..seqlen-1 are scored given the earlier ones of that window only;
 * ppl = exp(total NLL / (windows · (seqlen − 1))).
 */
export interface AllLogitsModel {
  readonly vocabSize: number;
  /** logits of every fed position, `[tokens.length, vocab]` */
  forwardAll(tokens: readonly number[], startPos: number): Promise<Float32Array>;
}

export interface PerplexityResult {
  readonly ppl: number;
  readonly windows: number;
  /** tokens scored */
  readonly tokens: number;
  readonly nll: number;
}

export async function perplexity(
  model: AllLogitsModel, ids: readonly number[], seqlen: number,
  options: { maxWindows?: number; onWindow?: (done: number, total: number, pplSoFar: number) => void } = {},
): Promise<PerplexityResult> {
  if (!Number.isInteger(seqlen) || seqlen < 2) throw new RangeError(`seqlen must be an integer ≥ 2, got ${seqlen}`);
  const available = Math.floor(ids.length / seqlen);
  const windows = Math.min(available, options.maxWindows ?? available);
  let nll = 0;
  for (let w = 0; w < windows; w++) {
    const window = ids.slice(w * seqlen, (w + 1) * seqlen);
    const logits = await model.forwardAll(window, 0);
    for (let t = 0; t < seqlen - 1; t++) nll += tokenNll(logits, t * model.vocabSize, model.vocabSize, window[t + 1]);
    options.onWindow?.(w + 1, windows, Math.exp(nll / ((w + 1) * (seqlen - 1))));
  }
  const tokens = windows * (seqlen - 1);
  return { ppl: tokens > 0 ? Math.exp(nll / tokens) : NaN, windows, tokens, nll };
}

/** −log softmax(logits[off..off+vocab])[target], in double precision. */
function tokenNll(logits: Float32Array, off: number, vocab: number, target: number): number {
  let max = -Infinity;
  for (let i = 0; i < vocab; i++) if (logits[off + i] > max) max = logits[off + i];
  let sum = 0;
  for (let i = 0; i < vocab; i++) sum += Math.exp(logits[off + i] - max);
  return Math.log(sum) + max - logits[off + target];
}
