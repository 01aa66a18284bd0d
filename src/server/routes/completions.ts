import type { FastifyInstance } from 'fastify';
import { prepareCompletion } from '../generation/prompt.js';
import { startGeneration } from '../generation/session.js';
import { parseCompletionRequest } from '../openai/completion.js';
import type { Completion } from '../openai/types.js';
import { SseWriter } from '../sse.js';
import { clientSignal } from './clientSignal.js';
import type { RouteDeps } from './deps.js';
import { SYSTEM_FINGERPRINT, abandon, drive, finishReasonOf, newId, nowSeconds, streamError, usageOf } from './openaiReplies.js';

/** POST /v1/completions: raw text completion (the Notebook tab), no template. */
export function registerCompletions(app: FastifyInstance, deps: RouteDeps): void {
  app.post('/v1/completions', async (request, reply) => {
    const req = parseCompletionRequest(request.body);
    const signal = clientSignal(reply);
    const session = await startGeneration(deps, req.model, (engine) => prepareCompletion(engine, req), signal);
    const id = newId('cmpl');
    const created = nowSeconds();
    const model = session.engine.id;
    const echoed = req.echo && req.prompt.kind === 'text' ? req.prompt.text : '';
    const body = (text: string, finish: Completion['choices'][number]['finish_reason'], usage?: Completion['usage']): Completion => ({
      id, object: 'text_completion', created, model, system_fingerprint: SYSTEM_FINGERPRINT,
      choices: [{ index: 0, text, finish_reason: finish, logprobs: null }],
      ...(usage !== undefined ? { usage } : {}),
    });

    if (!req.stream) {
      let text = echoed;
      const result = await drive(session, (piece) => { text += piece; });
      if (result === undefined) return abandon(reply);
      return body(text, finishReasonOf(result), usageOf(result));
    }

    reply.hijack();
    const sse = new SseWriter(reply.raw);
    const usageField = req.includeUsage ? null : undefined;
    try {
      sse.start();
      if (echoed !== '') await sse.send(body(echoed, null, usageField));
      const result = await drive(session, (piece) => sse.send(body(piece, null, usageField)));
      if (result === undefined) return sse.end();
      await sse.send(body('', finishReasonOf(result), usageField));
      if (req.includeUsage) {
        const last: Completion = { id, object: 'text_completion', created, model, system_fingerprint: SYSTEM_FINGERPRINT, choices: [], usage: usageOf(result) };
        await sse.send(last);
      }
      await sse.done();
    } catch (err) {
      request.log.error(err);
      await streamError(sse, err);
    }
  });
}
