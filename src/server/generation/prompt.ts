import type { ChatMessage, ChatTemplate } from '../../chat/chatTemplate.js';
import { encodeChatPrompt } from '../../chat/encodePrompt.js';
import type { GenerationRequest } from '../../generate/generator.js';
import { InvalidSamplingOptionsError, resolveSampling } from '../../generate/samplingOptions.js';
import { ApiError, badRequest } from '../apiError.js';
import type { InferenceEngine } from '../engine/inferenceEngine.js';
import type { ChatCompletionRequest } from '../openai/chatCompletion.js';
import type { CompletionRequest } from '../openai/completion.js';
import type { GenerationParams } from '../openai/generationParams.js';

/** A request turned into what the generator takes (no signal yet: the route owns it). */
export type PreparedRequest = Omit<GenerationRequest, 'signal'>;

/** Chat: messages through the model's template; its next-turn header is always a stop string. */
export function prepareChat(engine: InferenceEngine, req: ChatCompletionRequest): PreparedRequest {
  const template = engine.template.template;
  const text = req.continueFinal ? continuationPrompt(template, req.messages) : template.render(req.messages, { addGenerationPrompt: true });
  const promptIds = encodeChatPrompt(engine.codec, text);
  const prepared = finish(engine, req, promptIds, [...template.stop, ...req.stop]);
  // a fresh reply drops SentencePiece's leading space; continuing the last message keeps it
  return { ...prepared, continuesPrompt: req.continueFinal === true };
}

/**
 * The prompt that continues the final assistant message: the transcript rendered as the
 * template writes it, cut right after that message's text (dropping the template's
 * end-of-turn suffix). Works for any template that writes the content verbatim.
 */
function continuationPrompt(template: ChatTemplate, messages: readonly ChatMessage[]): string {
  const last = messages[messages.length - 1];
  const before = messages.slice(0, -1);
  if (last.content === '') return template.render(before, { addGenerationPrompt: true });
  const rendered = template.render(messages, { addGenerationPrompt: false });
  const at = rendered.lastIndexOf(last.content);
  if (at < 0) return template.render(before, { addGenerationPrompt: true }) + last.content;
  return rendered.slice(0, at + last.content.length);
}

/** Completion: raw text with BOS, or the caller's token ids unchanged. */
export function prepareCompletion(engine: InferenceEngine, req: CompletionRequest): PreparedRequest {
  let promptIds: number[];
  if (req.prompt.kind === 'text') {
    promptIds = engine.codec.encode(req.prompt.text, { addBos: true });
  } else {
    const bad = req.prompt.ids.find((id) => id >= engine.vocabSize);
    if (bad !== undefined) throw badRequest(`prompt token id ${bad} is outside the vocabulary (0..${engine.vocabSize - 1})`, 'prompt', 'invalid_value');
    promptIds = [...req.prompt.ids];
  }
  return finish(engine, req, promptIds, req.stop);
}

/** The context check OpenAI makes: prompt + max_tokens must fit the window. */
function finish(engine: InferenceEngine, req: GenerationParams, promptIds: number[], stop: readonly string[]): PreparedRequest {
  const ctx = engine.contextLength;
  const room = ctx - promptIds.length;
  const asked = req.maxTokens ?? room;
  if (room < 1 || asked > room) {
    const param = req.maxTokens === undefined ? 'messages' : 'max_tokens';
    throw new ApiError(400,
      `This model's maximum context length is ${ctx} tokens. However, you requested ${promptIds.length + Math.max(asked, 1)} tokens ` +
      `(${promptIds.length} in the prompt, ${Math.max(asked, 1)} for the completion). Please reduce the prompt or max_tokens.`,
      'invalid_request_error', param, 'context_length_exceeded');
  }
  try {
    resolveSampling(req.sampling); // the generator would throw the same, but only once queued
  } catch (err) {
    if (err instanceof InvalidSamplingOptionsError) throw badRequest(err.message, null, 'invalid_value');
    throw err;
  }
  return { promptIds, maxNewTokens: asked, sampling: req.sampling, stop: [...new Set(stop)], stopAtEos: !req.ignoreEos };
}
