import { ContextOverflowError, QllamaError } from '../errors.js';
import type { CausalLm } from '../model/causalLm.js';
import { Sampler } from './sampler.js';
import type { SamplingOptions } from './samplingOptions.js';
import { StopStringMatcher } from './stopStrings.js';
import type { TextCodec } from './textCodec.js';

/**
 * Why generation ended, with OpenAI's names: 'stop' = EOS or a stop string, 'length' = max new
 * tokens or the context window is full, 'aborted' = the caller's AbortSignal fired (OpenAI has
 * no name for it; vLLM says 'abort'; we keep the past participle like the others).
 */
export type FinishReason = 'stop' | 'length' | 'aborted';

export interface GenerationRequest {
  /** The whole prompt, BOS included if the model wants one. */
  readonly promptIds: readonly number[];
  readonly maxNewTokens: number;
  readonly sampling?: Partial<SamplingOptions>;
  /** Strings that end the reply; they are cut and never emitted. */
  readonly stop?: readonly string[];
  /** End at the codec's EOS id (default true). */
  readonly stopAtEos?: boolean;
  /**
   * The reply continues the prompt's text (default true: raw completion, where prompt + reply
   * must read as one text, so a first token " for" keeps its space). False for a fresh reply
   * after a chat template's "Assistant:", where SentencePiece's leading space is dropped.
   */
  readonly continuesPrompt?: boolean;
  /** Checked between tokens (and before the prompt is fed). */
  readonly signal?: AbortSignal;
}

/**
 * What the model's KV cache holds, shared across calls on one model so chat turns only feed the
 * new part of the prompt. `generate` reads and updates `cachedIds` (the ids at positions
 * 0..n-1); start with `{ cachedIds: [] }`, and reset it to [] if anything else uses the model.
 */
export interface KvCacheState {
  cachedIds: number[];
}

export interface GeneratedToken {
  readonly tokenId: number;
  /** Text that became final with this token ('' while held back by the stream decoder or a stop string). */
  readonly text: string;
}

export interface GenerationResult {
  /** Concatenation of every streamed `text` (no stop string, no EOS). */
  readonly text: string;
  /** Every sampled id, including the EOS or the tokens of a matched stop string. */
  readonly tokenIds: number[];
  readonly promptTokenIds: number[];
  readonly finishReason: FinishReason;
  /** The stop string that matched, when one did. */
  readonly stopString: string | null;
  /** Prompt ids actually fed (the rest came from the KV cache). */
  readonly promptTokensEvaluated: number;
  /** The sampler's seed, so a sampled reply can be replayed. */
  readonly seed: number;
}

/**
 * A prompt id the model has no embedding for: the tokenizer has more pieces than the weights' vocabulary (an added
 * or special token past config.json's vocab_size), so the tokenizer and the weights do not belong together.
 */
export class PromptTokenError extends QllamaError {}

/**
 * Stream a completion token by token. Each sampled token yields one event, whose text is
 * whatever became final (possibly ''); the generator's return value is the full result.
 * Text on abort: held-back text (a possible stop-string start, a partial UTF-8 character) is
 * dropped, so `result.text` always equals the streamed text.
 *
 * Throws PromptTokenError for a prompt id outside the model's vocabulary and ContextOverflowError when the
 * prompt leaves no room for a new token, both before feeding anything; stops with 'length' when the context
 * fills up during generation.
 */
export async function* generate(
  model: CausalLm,
  codec: TextCodec,
  request: GenerationRequest,
  state: KvCacheState = { cachedIds: [] },
): AsyncGenerator<GeneratedToken, GenerationResult, undefined> {
  const promptIds = [...request.promptIds];
  const ctx = model.contextLength;
  if (promptIds.length === 0) throw new RangeError('promptIds is empty: encode the prompt with BOS first');
  if (!Number.isInteger(request.maxNewTokens) || request.maxNewTokens < 0) {
    throw new RangeError(`maxNewTokens must be an integer ≥ 0, got ${request.maxNewTokens}`);
  }
  const bad = promptIds.find((id) => !Number.isInteger(id) || id < 0 || id >= model.vocabSize);
  if (bad !== undefined) {
    throw new PromptTokenError(
      `the prompt encodes to token id ${bad}, but the model's vocabulary has ids 0..${model.vocabSize - 1}: its tokenizer has ` +
        'more pieces than its weights embed (an added or special token?); use the tokenizer files that came with these weights',
    );
  }
  if (promptIds.length >= ctx) {
    throw new ContextOverflowError(
      `the prompt is ${promptIds.length} tokens but the context window is ${ctx}, which leaves no room for a reply: ` +
        'shorten the prompt (or the chat history, e.g. /reset), or raise --ctx up to the model\'s max_position_embeddings',
    );
  }

  const sampler = new Sampler(model.vocabSize, request.sampling);
  const stopAtEos = request.stopAtEos ?? true;
  const matcher = new StopStringMatcher(request.stop ?? []);
  const decoder = codec.createStreamDecoder({ continuation: request.continuesPrompt ?? true });
  const signal = request.signal;
  const history = [...promptIds]; // prompt + generated, for the penalties
  const tokenIds: number[] = [];
  let text = '';
  let finishReason: FinishReason = 'length';

  // Reuse the cached prefix; at least the last prompt id is fed, since its logits are needed.
  const reuse = Math.min(commonPrefixLength(state.cachedIds, promptIds), promptIds.length - 1);
  const result = (): GenerationResult => ({
    text,
    tokenIds,
    promptTokenIds: promptIds,
    finishReason,
    stopString: matcher.matched,
    promptTokensEvaluated: promptIds.length - reuse,
    seed: sampler.seed,
  });

  if (signal?.aborted) {
    finishReason = 'aborted';
    return result();
  }
  if (request.maxNewTokens === 0) return result();

  // Feed tokens and choose the next id. Plain greedy decoding on a backend with a device argmax, and
  // temperature / top-k / top-p / min-p sampling on one with a device sampler, bring back only the
  // id, not the whole logits row; the device draws with the Sampler's next uniform, and where it
  // cannot decide, the logits come back and the host draws with that same uniform.
  const forwardArgmax = sampler.isPlainGreedy ? model.forwardArgmax?.bind(model) : undefined;
  const forwardSample = forwardArgmax ? undefined : model.forwardSample?.bind(model);
  const feed = async (tokens: readonly number[], pos: number): Promise<number> => {
    if (forwardArgmax) return forwardArgmax(tokens, pos);
    const device = forwardSample ? sampler.deviceSampling() : null;
    if (!forwardSample || device === null) return sampler.sample(await model.forward(tokens, pos), history);
    const out = await forwardSample(tokens, pos, device);
    if (typeof out !== 'number') return sampler.sample(out, history);
    sampler.acceptDeviceDraw();
    return out;
  };

  // While forward runs, only positions before startPos are known to be valid.
  state.cachedIds = promptIds.slice(0, reuse);
  let id = await feed(promptIds.slice(reuse), reuse);
  state.cachedIds = [...promptIds];

  for (;;) {
    if (signal?.aborted) {
      finishReason = 'aborted';
      break;
    }
    tokenIds.push(id);
    history.push(id);

    let piece: string;
    let done = false;
    if (stopAtEos && id === codec.eosId) {
      finishReason = 'stop';
      piece = matcher.push(decoder.flush()).text + matcher.flush();
      done = true;
    } else {
      const pushed = matcher.push(decoder.push(id));
      piece = pushed.text;
      if (pushed.stop !== null) {
        finishReason = 'stop';
        done = true;
      } else if (tokenIds.length >= request.maxNewTokens || history.length >= ctx) {
        // 'length': the last token; release whatever was held back
        const tail = matcher.push(decoder.flush());
        piece += tail.text;
        if (tail.stop !== null) finishReason = 'stop';
        else piece += matcher.flush();
        done = true;
      }
    }
    text += piece;
    yield { tokenId: id, text: piece };
    if (done) break;
    // A forward pass runs synchronously, so without this pause a Ctrl-C handler, a client
    // disconnect or any timer would only run after the whole reply.
    await yieldToEventLoop();
    if (signal?.aborted) {
      finishReason = 'aborted';
      break;
    }
    const pos = history.length - 1;
    const fed = id;
    id = await feed([fed], pos);
    state.cachedIds.push(fed);
  }
  return result();
}

/** Drain `generate` without streaming (one code path for streaming and non-streaming callers). */
export async function generateAll(
  model: CausalLm,
  codec: TextCodec,
  request: GenerationRequest,
  state?: KvCacheState,
): Promise<GenerationResult> {
  const it = generate(model, codec, request, state);
  for (;;) {
    const step = await it.next();
    if (step.done === true) return step.value;
  }
}

/** How many leading ids a and b share (the part of a cached KV prefix a new prompt can reuse). */
export function commonPrefixLength(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

/** Lets queued I/O and timers run (a macrotask turn), so AbortSignals can fire between tokens. */
function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
