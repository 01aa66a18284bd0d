import { QllamaError } from '../errors.js';

/**
 * How the next token is chosen from the logits. Every filter has a value that turns it off,
 * and the defaults turn everything off except temperature 1 (plain sampling from softmax).
 * The transforms run in a fixed order, documented on `Sampler`.
 */
export interface SamplingOptions {
  /** Divides the logits. 0 = greedy (argmax, lowest id on ties). */
  readonly temperature: number;
  /** Keep the k most likely tokens. 0 = off. */
  readonly topK: number;
  /** Nucleus: keep the smallest set of most likely tokens whose mass reaches p. 1 = off. */
  readonly topP: number;
  /** Keep tokens with probability ≥ minP × the top probability. 0 = off. */
  readonly minP: number;
  /** Locally typical sampling (Meister et al. 2022, as HF's TypicalLogitsWarper). 1 = off. */
  readonly typicalP: number;
  /**
   * HF / llama.cpp repetition penalty (Keskar et al. 2019): for each distinct token in the
   * window, a positive logit is divided by it, a negative one multiplied. 1 = off.
   */
  readonly repetitionPenalty: number;
  /** OpenAI presence penalty: subtracted once from every token seen in the window. 0 = off. */
  readonly presencePenalty: number;
  /** OpenAI frequency penalty: subtracted once per occurrence in the window. 0 = off. */
  readonly frequencyPenalty: number;
  /**
   * The penalty window: the last N ids of the history (prompt + generated, as HF and
   * llama.cpp count them). -1 = the whole history, 0 = no penalties.
   */
  readonly repeatLastN: number;
  /** PRNG seed (unsigned 32-bit). Absent: a random seed, reported by `Sampler.seed`. */
  readonly seed?: number;
}

export const DEFAULT_SAMPLING: Readonly<Required<Omit<SamplingOptions, 'seed'>>> = Object.freeze({
  temperature: 1,
  topK: 0,
  topP: 1,
  minP: 0,
  typicalP: 1,
  repetitionPenalty: 1,
  presencePenalty: 0,
  frequencyPenalty: 0,
  repeatLastN: -1,
});

/** A sampling option outside its range (a user error: the flag or request field is wrong). */
export class InvalidSamplingOptionsError extends QllamaError {}

/** Fill defaults and check ranges; throws InvalidSamplingOptionsError naming the field. */
export function resolveSampling(partial: Partial<SamplingOptions> = {}): SamplingOptions {
  const o: SamplingOptions = { ...DEFAULT_SAMPLING, ...dropUndefined(partial) };
  check('temperature', o.temperature, o.temperature >= 0, 'a number ≥ 0 (0 = greedy)');
  check('topK', o.topK, Number.isInteger(o.topK) && o.topK >= 0, 'an integer ≥ 0 (0 = off)');
  check('topP', o.topP, o.topP > 0 && o.topP <= 1, 'in (0, 1] (1 = off)');
  check('minP', o.minP, o.minP >= 0 && o.minP <= 1, 'in [0, 1] (0 = off)');
  check('typicalP', o.typicalP, o.typicalP > 0 && o.typicalP <= 1, 'in (0, 1] (1 = off)');
  check('repetitionPenalty', o.repetitionPenalty, o.repetitionPenalty > 0, 'a number > 0 (1 = off)');
  check('presencePenalty', o.presencePenalty, Number.isFinite(o.presencePenalty), 'a finite number (0 = off)');
  check('frequencyPenalty', o.frequencyPenalty, Number.isFinite(o.frequencyPenalty), 'a finite number (0 = off)');
  check('repeatLastN', o.repeatLastN, Number.isInteger(o.repeatLastN) && o.repeatLastN >= -1, 'an integer ≥ -1 (-1 = whole history, 0 = off)');
  if (o.seed !== undefined) {
    check('seed', o.seed, Number.isInteger(o.seed) && o.seed >= 0 && o.seed <= 0xffffffff, 'an integer in [0, 2^32)');
  }
  return o;
}

function check(field: string, value: number, ok: boolean, expected: string): void {
  if (!ok || Number.isNaN(value)) {
    throw new InvalidSamplingOptionsError(`sampling option ${field} = ${value} is invalid: expected ${expected}`);
  }
}

function dropUndefined(partial: Partial<SamplingOptions>): Partial<SamplingOptions> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(partial)) if (v !== undefined) out[k] = v as number;
  return out as Partial<SamplingOptions>;
}
