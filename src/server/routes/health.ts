import type { FastifyInstance } from 'fastify';
import type { RouteDeps } from './deps.js';

/** GET /health (liveness plus what a load balancer wants to know) and GET /metrics (Prometheus). */
export function registerHealth(app: FastifyInstance, deps: RouteDeps): void {
  app.get('/health', async () => ({
    status: 'ok',
    model: deps.models.current?.id ?? null,
    loading: deps.models.loading,
    running: deps.scheduler.runningCount,
    queued: deps.scheduler.queuedCount,
    slots: deps.scheduler.concurrency,
    uptime_s: Math.round((Date.now() - deps.startedAt) / 1000),
  }));

  app.get('/metrics', async (_request, reply) => {
    reply.header('content-type', deps.metrics.contentType);
    return deps.metrics.text();
  });
}
