import type { ChatMessage, ChatRole } from '../../chat/chatTemplate.js';
import { badRequest } from '../apiError.js';
import { checkFields, isRecord } from './fields.js';
import { GENERATION_FIELDS, readGenerationParams, type GenerationParams } from './generationParams.js';
import { optBoolean } from './read.js';

export interface ChatCompletionRequest extends GenerationParams {
  readonly messages: readonly ChatMessage[];
  /**
   * vLLM's `continue_final_message`: the last message is an unfinished assistant reply that the
   * model continues (the web UI's Continue button), instead of starting a new one.
   */
  readonly continueFinal: boolean;
}

const CHAT_FIELDS = [...GENERATION_FIELDS, 'messages', 'continue_final_message'];

/** Validate a POST /v1/chat/completions body; every problem is a 400 naming the field. */
export function parseChatCompletionRequest(body: unknown): ChatCompletionRequest {
  if (!isRecord(body)) throw badRequest('the request body must be a JSON object', null, 'invalid_body');
  checkFields(body, CHAT_FIELDS);
  const params = readGenerationParams(body);
  const raw = body.messages;
  if (!Array.isArray(raw) || raw.length === 0) {
    throw badRequest('messages must be a non-empty array of {role, content}', 'messages', 'invalid_value');
  }
  const messages = raw.map((m: unknown, i) => readMessage(m, i));
  if (!messages.some((m) => m.role !== 'system')) {
    throw badRequest('messages needs at least one user or assistant message', 'messages', 'invalid_value');
  }
  const continueFinal = optBoolean(body, 'continue_final_message') ?? false;
  if (continueFinal && messages[messages.length - 1].role !== 'assistant') {
    throw badRequest('continue_final_message needs an assistant message last', 'continue_final_message', 'invalid_value');
  }
  return { ...params, messages, continueFinal };
}

function readMessage(m: unknown, i: number): ChatMessage {
  const param = `messages[${i}]`;
  if (!isRecord(m)) throw badRequest(`${param} must be an object {role, content}`, param, 'invalid_type');
  const role = readRole(m.role, `${param}.role`);
  return { role, content: readContent(m.content, `${param}.content`) };
}

function readRole(v: unknown, param: string): ChatRole {
  if (v === 'system' || v === 'user' || v === 'assistant') return v;
  // OpenAI's newer name for the system role: the template has one place for it.
  if (v === 'developer') return 'system';
  if (v === 'tool' || v === 'function') throw badRequest(`${param} "${v}": tool messages are not supported (no tool calling)`, param, 'unsupported_value');
  throw badRequest(`${param} must be system, user or assistant, got ${JSON.stringify(v)}`, param, 'invalid_value');
}

/** A string, or OpenAI's content parts of type text (joined); images and audio are refused. */
function readContent(v: unknown, param: string): string {
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) {
    return v.map((part: unknown, j) => {
      if (isRecord(part) && part.type === 'text' && typeof part.text === 'string') return part.text;
      throw badRequest(`${param}[${j}]: only text content parts are supported`, `${param}[${j}]`, 'unsupported_value');
    }).join('');
  }
  throw badRequest(`${param} must be a string or an array of text parts`, param, 'invalid_type');
}
