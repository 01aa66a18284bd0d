import type { FastifyInstance } from 'fastify';
import type { ModelList, ModelObject } from '../openai/types.js';
import { notFound } from '../apiError.js';
import type { RouteDeps } from './deps.js';

/**
 * GET /v1/models lists the loaded model only: it is the one a request can name. The local
 * folders that could be loaded are GET /api/models.
 */
export function registerOpenAiModels(app: FastifyInstance, deps: RouteDeps): void {
  const object = (): ModelObject | null => {
    const cur = deps.models.current;
    return cur ? { id: cur.id, object: 'model', created: Math.floor(cur.loadedAt / 1000), owned_by: 'qllama' } : null;
  };
  app.get('/v1/models', async (): Promise<ModelList> => {
    const m = object();
    return { object: 'list', data: m ? [m] : [] };
  });
  app.get<{ Params: { id: string } }>('/v1/models/:id', async (request): Promise<ModelObject> => {
    const m = object();
    if (!m || m.id !== request.params.id) throw notFound(`The model \`${request.params.id}\` does not exist or is not loaded`, 'model_not_found', 'model');
    return m;
  });
}
