import type { FastifyInstance } from 'fastify';
import { prepareChat } from '../generation/prompt.js';
import { startGeneration } from '../generation/session.js';
import { parseChatCompletionRequest } from '../openai/chatCompletion.js';
import type { ChatCompletion, ChatCompletionChunk } from '../openai/types.js';
import { SseWriter } from '../sse.js';
import { clientSignal } from './clientSignal.js';
import type { RouteDeps } from './deps.js';
import { SYSTEM_FINGERPRINT, abandon, drive, finishReasonOf, newId, nowSeconds, streamError, usageOf } from './openaiReplies.js';

/** POST /v1/chat/completions: messages through the model's chat template. */
export function registerChatCompletions(app: FastifyInstance, deps: RouteDeps): void {
  app.post('/v1/chat/completions', async (request, reply) => {
    const req = parseChatCompletionRequest(request.body);
    const signal = clientSignal(reply);
    const session = await startGeneration(deps, req.model, (engine) => prepareChat(engine, req), signal);
    const id = newId('chatcmpl');
    const created = nowSeconds();
    const model = session.engine.id;

    if (!req.stream) {
      let content = '';
      const result = await drive(session, (text) => { content += text; });
      if (result === undefined) return abandon(reply); // client gone: nothing to answer
      const body: ChatCompletion = {
        id, object: 'chat.completion', created, model, system_fingerprint: SYSTEM_FINGERPRINT,
        choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: finishReasonOf(result), logprobs: null }],
        usage: usageOf(result),
      };
      return body;
    }

    reply.hijack();
    const sse = new SseWriter(reply.raw);
    const chunk = (delta: ChatCompletionChunk['choices'][number]['delta'], finish: ChatCompletionChunk['choices'][number]['finish_reason']): ChatCompletionChunk => ({
      id, object: 'chat.completion.chunk', created, model, system_fingerprint: SYSTEM_FINGERPRINT,
      choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }],
      ...(req.includeUsage ? { usage: null } : {}),
    });
    try {
      await sse.send(chunk({ role: 'assistant', content: '' }, null));
      const result = await drive(session, (text) => sse.send(chunk({ content: text }, null)));
      if (result === undefined) return sse.end();
      await sse.send(chunk({}, finishReasonOf(result)));
      if (req.includeUsage) {
        const last: ChatCompletionChunk = { id, object: 'chat.completion.chunk', created, model, system_fingerprint: SYSTEM_FINGERPRINT, choices: [], usage: usageOf(result) };
        await sse.send(last);
      }
      await sse.done();
    } catch (err) {
      request.log.error(err);
      await streamError(sse, err);
    }
  });
}
