import type { FastifyReply } from 'fastify';

/**
 * An AbortSignal that fires when the client goes away before its response is complete: a
 * queued request leaves the queue, a running one stops decoding and frees its slot.
 * (The request's own 'close' fires once its body is read, so the response is watched.)
 */
export function clientSignal(reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) controller.abort(new Error('the client closed the connection'));
  });
  return controller.signal;
}
