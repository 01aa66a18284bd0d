import { badRequest } from '../apiError.js';
import { checkFields, isRecord } from './fields.js';
import { GENERATION_FIELDS, readGenerationParams, type GenerationParams } from './generationParams.js';
import { optBoolean } from './read.js';

/** The prompt of a completion: text (encoded with BOS) or token ids taken as they are. */
export type CompletionPrompt = { readonly kind: 'text'; readonly text: string } | { readonly kind: 'ids'; readonly ids: readonly number[] };

export interface CompletionRequest extends GenerationParams {
  readonly prompt: CompletionPrompt;
  /** Put the prompt text in front of the completion (text prompts only). */
  readonly echo: boolean;
}

const COMPLETION_FIELDS = [...GENERATION_FIELDS, 'prompt', 'echo'];

/** Validate a POST /v1/completions body; every problem is a 400 naming the field. */
export function parseCompletionRequest(body: unknown): CompletionRequest {
  if (!isRecord(body)) throw badRequest('the request body must be a JSON object', null, 'invalid_body');
  checkFields(body, COMPLETION_FIELDS);
  const params = readGenerationParams(body);
  const prompt = readPrompt(body.prompt);
  const echo = optBoolean(body, 'echo') ?? false;
  if (echo && prompt.kind === 'ids') throw badRequest('echo needs a text prompt', 'echo', 'unsupported_value');
  return { ...params, prompt, echo };
}

/** OpenAI accepts a string, an array of strings, token ids, or an array of those: one prompt here. */
function readPrompt(v: unknown): CompletionPrompt {
  const one = Array.isArray(v) && v.length === 1 && (typeof v[0] === 'string' || Array.isArray(v[0])) ? v[0] : v;
  if (typeof one === 'string') {
    if (one === '') throw badRequest('prompt must not be empty', 'prompt', 'invalid_value');
    return { kind: 'text', text: one };
  }
  if (Array.isArray(one) && one.length > 0 && one.every((id) => Number.isInteger(id) && id >= 0)) {
    return { kind: 'ids', ids: one as number[] };
  }
  if (Array.isArray(v) && v.length > 1) {
    throw badRequest(`prompt has ${v.length} entries: this server completes one prompt per request; send them separately`, 'prompt', 'unsupported_value');
  }
  throw badRequest('prompt is required: a non-empty string or an array of token ids', 'prompt', v === undefined ? 'missing_required_parameter' : 'invalid_type');
}
