import type { FastifyReply } from 'fastify';
import { ApiError } from '../apiError.js';

/**
 * An AbortSignal that fires when the client goes away before its response is complete: a
 * queued request leaves the queue, a running one stops decoding and frees its slot.
 * (The request's own 'close' fires once its body is read, so the response is watched.)
 * The abort reason is an ApiError 499 (nginx's "client closed request"): a request that was
 * still queued rejects with it, and the error handler answers it quietly instead of logging
 * a client that left as an internal error.
 */
export function clientSignal(reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) controller.abort(clientClosed());
  });
  return controller.signal;
}

export function clientClosed(): ApiError {
  return new ApiError(499, 'the client closed the connection', 'invalid_request_error', null, 'client_closed');
}
