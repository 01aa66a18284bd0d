import type { FastifyReply } from 'fastify';
import { randomUUID } from 'node:crypto';
import type { GenerationResult } from '../../generate/generator.js';
import type { GenerationSession } from '../generation/session.js';
import type { OpenAiFinishReason, Usage } from '../openai/types.js';
import type { SseWriter } from '../sse.js';

/** Identifies this build's sampling behaviour, as OpenAI's system_fingerprint does. */
export const SYSTEM_FINGERPRINT = 'qllama-0.1.0';

export function newId(prefix: 'chatcmpl' | 'cmpl'): string {
  return `${prefix}-${randomUUID().replaceAll('-', '')}`;
}

export function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

export function usageOf(r: GenerationResult): Usage {
  return { prompt_tokens: r.promptTokenIds.length, completion_tokens: r.tokenIds.length, total_tokens: r.promptTokenIds.length + r.tokenIds.length };
}

export function finishReasonOf(r: GenerationResult): OpenAiFinishReason {
  return r.finishReason === 'length' ? 'length' : 'stop';
}

/**
 * Drive a session to its end, calling `onText` for every non-empty piece. The one loop behind
 * every reply: non-streaming callers pass a collector, streaming ones an SSE writer.
 * Returns undefined when the client left (the session was stopped).
 */
export async function drive(session: GenerationSession, onText: (text: string) => Promise<void> | void): Promise<GenerationResult | undefined> {
  try {
    for (;;) {
      const step = await session.tokens.next();
      if (step.done === true) return step.value?.finishReason === 'aborted' ? undefined : step.value;
      if (step.value.text !== '') await onText(step.value.text);
    }
  } finally {
    await session.close();
  }
}

/** Mid-stream failure: the status line is gone, so the error travels as an SSE event. */
export async function streamError(sse: SseWriter, err: unknown): Promise<void> {
  const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  await sse.send({ error: { message, type: 'server_error', param: null, code: null } });
  sse.end();
}

/** The client left before a non-streaming reply was ready: close without an answer. */
export function abandon(reply: FastifyReply): void {
  reply.hijack();
  reply.raw.end();
}
