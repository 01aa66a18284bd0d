import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { ApiError } from './apiError.js';

/** Paths that need the key: the API. The UI's files, /health and /metrics stay open (loopback by default). */
export function isProtectedPath(url: string): boolean {
  return url.startsWith('/v1/') || url === '/v1' || url.startsWith('/api/');
}

/**
 * `--api-key`: every API request must carry `Authorization: Bearer <key>`, as OpenAI's clients
 * send it. Compared through fixed-length digests in constant time, so timing says nothing.
 */
export function registerApiKeyAuth(app: FastifyInstance, apiKey: string): void {
  const expected = digest(apiKey);
  app.addHook('onRequest', async (request) => {
    if (!isProtectedPath(request.url)) return;
    const header = request.headers.authorization ?? '';
    const match = /^Bearer\s+(.+)$/i.exec(header);
    if (!match || !timingSafeEqual(digest(match[1].trim()), expected)) {
      throw new ApiError(401, match
        ? 'Incorrect API key provided. The server was started with --api-key; send that key as "Authorization: Bearer <key>".'
        : 'You didn\'t provide an API key. This server was started with --api-key: send "Authorization: Bearer <key>".',
      'authentication_error', null, 'invalid_api_key');
    }
  });
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}
