import type { SamplingOptions } from '../../generate/samplingOptions.js';
import { badRequest } from '../apiError.js';
import { optBoolean, optNumber, optStop } from './read.js';

/** What both endpoints ask of the generator, read from the OpenAI fields and qllama's own. */
export interface GenerationParams {
  readonly model: string;
  readonly stream: boolean;
  /** `stream_options.include_usage`: a last chunk with usage and no choices. */
  readonly includeUsage: boolean;
  /** undefined = until the context is full (OpenAI's default). */
  readonly maxTokens: number | undefined;
  readonly stop: readonly string[];
  readonly ignoreEos: boolean;
  readonly sampling: Partial<SamplingOptions>;
}

/** The fields this module reads; each endpoint adds its own prompt fields. */
export const GENERATION_FIELDS = [
  'model', 'stream', 'stream_options', 'max_tokens', 'max_completion_tokens', 'n', 'temperature', 'top_p',
  'stop', 'seed', 'presence_penalty', 'frequency_penalty',
] as const;

export function readGenerationParams(body: Readonly<Record<string, unknown>>): GenerationParams {
  const model = body.model;
  if (typeof model !== 'string' || model === '') {
    throw badRequest('model is required: use the id GET /v1/models lists', 'model', 'missing_required_parameter');
  }
  const n = optNumber(body, 'n', { integer: true, min: 1 });
  if (n !== undefined && n !== 1) {
    throw badRequest(`n = ${n} is not supported: this server returns one choice per request; send ${n} requests instead`, 'n', 'unsupported_value');
  }
  const stream = optBoolean(body, 'stream') ?? false;
  const streamOptions = body.stream_options;
  let includeUsage = false;
  if (streamOptions !== undefined && streamOptions !== null) {
    if (!stream) throw badRequest('stream_options is only allowed when stream is true', 'stream_options', 'invalid_value');
    if (typeof streamOptions !== 'object' || Array.isArray(streamOptions)) throw badRequest('stream_options must be an object', 'stream_options', 'invalid_type');
    includeUsage = optBoolean(streamOptions as Record<string, unknown>, 'include_usage') ?? false;
  }
  const maxTokens = optNumber(body, 'max_completion_tokens', { integer: true, min: 1 }) ?? optNumber(body, 'max_tokens', { integer: true, min: 1 });
  const sampling: Partial<SamplingOptions> = {
    temperature: optNumber(body, 'temperature', { min: 0, max: 2 }),
    topP: optNumber(body, 'top_p', { above: 0, max: 1 }),
    seed: optNumber(body, 'seed', { integer: true, min: 0, max: 0xffffffff }),
    presencePenalty: optNumber(body, 'presence_penalty', { min: -2, max: 2 }),
    frequencyPenalty: optNumber(body, 'frequency_penalty', { min: -2, max: 2 }),
    topK: optNumber(body, 'top_k', { integer: true, min: 0 }),
    minP: optNumber(body, 'min_p', { min: 0, max: 1 }),
    typicalP: optNumber(body, 'typical_p', { above: 0, max: 1 }),
    repetitionPenalty: optNumber(body, 'repetition_penalty', { above: 0 }),
    repeatLastN: optNumber(body, 'repeat_last_n', { integer: true, min: -1 }),
  };
  return { model, stream, includeUsage, maxTokens, stop: optStop(body), ignoreEos: optBoolean(body, 'ignore_eos') ?? false, sampling };
}
