import { badRequest } from '../apiError.js';

/**
 * Which request fields qllama reads, which it knows but cannot honour, and which it ignores.
 * Following OpenAI itself, a field in none of these lists is a 400 ("Unrecognized request
 * argument"), so a typo such as `max_token` is reported instead of silently doing nothing.
 */

/** Fields that change the output in ways qllama cannot provide: set to anything but their off value → 400. */
export const UNSUPPORTED_FIELDS: Readonly<Record<string, string>> = {
  tools: 'tool calling is not supported',
  tool_choice: 'tool calling is not supported',
  functions: 'function calling is not supported',
  function_call: 'function calling is not supported',
  parallel_tool_calls: 'tool calling is not supported',
  logit_bias: 'logit_bias is not supported',
  logprobs: 'logprobs are not supported yet',
  top_logprobs: 'logprobs are not supported yet',
  audio: 'audio output is not supported',
  modalities: 'only text output is supported',
  prediction: 'predicted outputs are not supported',
  web_search_options: 'web search is not supported',
  suffix: 'suffix (insertion) is not supported',
  best_of: 'best_of > 1 is not supported: the server returns one choice',
  response_format: 'only response_format {"type": "text"} is supported',
  reasoning_effort: 'reasoning_effort applies to reasoning models only',
};

/** Fields accepted and ignored: they describe the caller, not the generation. */
export const IGNORED_FIELDS: readonly string[] = ['user', 'store', 'metadata', 'service_tier', 'safety_identifier', 'prompt_cache_key'];

/** qllama's own sampling fields (the names vLLM and text-generation-webui's API use). */
export const QLLAMA_FIELDS: readonly string[] = [
  'top_k', 'min_p', 'typical_p', 'repetition_penalty', 'repeat_last_n', 'ignore_eos',
];

/**
 * Reject unknown fields and unsupported ones that are switched on. `known` are the fields the
 * endpoint reads itself. An unsupported field set to its "off" value (null, false, 0, 1 for
 * best_of, {"type":"text"} for response_format) is accepted, as clients often send defaults.
 */
export function checkFields(body: Readonly<Record<string, unknown>>, known: readonly string[]): void {
  for (const [name, value] of Object.entries(body)) {
    if (known.includes(name) || QLLAMA_FIELDS.includes(name) || IGNORED_FIELDS.includes(name)) continue;
    const why = UNSUPPORTED_FIELDS[name];
    if (why === undefined) {
      throw badRequest(`Unrecognized request argument supplied: ${name}`, name, 'unknown_parameter');
    }
    if (!isOffValue(name, value)) throw badRequest(`${name}: ${why}`, name, 'unsupported_parameter');
  }
}

function isOffValue(name: string, value: unknown): boolean {
  if (value === null || value === undefined || value === false) return true;
  if (name === 'best_of') return value === 1;
  if (name === 'logprobs') return value === 0;
  if (name === 'top_logprobs') return value === 0;
  if (name === 'logit_bias') return typeof value === 'object' && Object.keys(value).length === 0;
  if (name === 'tools' || name === 'functions') return Array.isArray(value) && value.length === 0;
  if (name === 'tool_choice') return value === 'none';
  if (name === 'modalities') return Array.isArray(value) && value.every((m) => m === 'text');
  if (name === 'response_format') return isRecord(value) && value.type === 'text';
  return false;
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
