import type { FastifyError, FastifyInstance } from 'fastify';
import { ApiError, type ApiErrorBody } from './apiError.js';

/**
 * Every failure leaves as an OpenAI-style error object, so clients show the message. Our
 * ApiErrors keep their status; fastify's own 4xx (bad JSON, body too large, wrong content
 * type) become invalid_request_error with fastify's code; anything else is a 500 and is logged.
 */
export function registerErrorHandling(app: FastifyInstance, log: (line: string) => void): void {
  app.setErrorHandler((error: FastifyError | ApiError | Error, _request, reply) => {
    if (error instanceof ApiError) return reply.code(error.status).send(error.toBody());
    const status = 'statusCode' in error && typeof error.statusCode === 'number' ? error.statusCode : 500;
    if (status >= 400 && status < 500) {
      const code = 'code' in error && typeof error.code === 'string' ? error.code : null;
      const body: ApiErrorBody = { error: { message: friendly(error.message, code), type: 'invalid_request_error', param: null, code } };
      return reply.code(status).send(body);
    }
    log(`internal error: ${error.stack ?? error.message}`);
    const body: ApiErrorBody = { error: { message: `internal server error (${error.name}: ${error.message}); please report it`, type: 'server_error', param: null, code: null } };
    return reply.code(500).send(body);
  });

  app.setNotFoundHandler((request, reply) => {
    const body: ApiErrorBody = { error: { message: `no route ${request.method} ${request.url.split('?')[0]}`, type: 'invalid_request_error', param: null, code: 'not_found' } };
    return reply.code(404).send(body);
  });
}

function friendly(message: string, code: string | null): string {
  if (code === 'FST_ERR_CTP_BODY_TOO_LARGE') return `${message} (the server's limit is --max-body)`;
  return message;
}
