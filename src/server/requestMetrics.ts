import type { FastifyInstance } from 'fastify';
import type { ServerMetrics } from './metrics.js';

/**
 * Count and time every request when its response closes: that covers hijacked streaming
 * replies (which skip fastify's onResponse hook) and clients that leave mid-stream.
 */
export function registerRequestMetrics(app: FastifyInstance, metrics: ServerMetrics): void {
  app.addHook('onRequest', async (request, reply) => {
    const started = performance.now();
    reply.raw.once('close', () => {
      const route = request.routeOptions.url ?? 'unmatched';
      const status = reply.raw.writableFinished ? String(reply.raw.statusCode) : 'client_closed';
      metrics.requests.inc({ route, method: request.method, status });
      metrics.requestSeconds.observe({ route }, (performance.now() - started) / 1000);
    });
  });
}
