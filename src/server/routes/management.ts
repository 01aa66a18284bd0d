import type { FastifyInstance } from 'fastify';
import { TEMPLATE_NAMES } from '../../chat/chatTemplate.js';
import { parseModelRef } from '../../hub/modelRef.js';
import { QllamaError } from '../../errors.js';
import { badRequest, notFound } from '../apiError.js';
import { isRecord } from '../openai/fields.js';
import { optNumber } from '../openai/read.js';
import { SseWriter } from '../sse.js';
import type { DownloadJob } from '../models/downloadJobs.js';
import type { RouteDeps } from './deps.js';

/**
 * Model management for the web UI's Model tab (text-generation-webui's workflow): list the
 * local folders with their detected settings, load/unload, download from the Hub with
 * progress over SSE.
 */
export function registerManagement(app: FastifyInstance, deps: RouteDeps): void {
  app.get('/api/models', async () => ({
    models_dir: deps.models.modelsDir,
    current: deps.models.current,
    loading: deps.models.loading,
    models: await deps.models.list(),
  }));

  app.get('/api/models/current', async () => ({ current: deps.models.current, loading: deps.models.loading }));

  app.get('/api/templates', async () => ({ templates: TEMPLATE_NAMES }));

  app.post('/api/models/load', async (request) => {
    const body = objectBody(request.body);
    const id = body.id;
    if (typeof id !== 'string' || id === '') throw badRequest('id is required: a model id from GET /api/models', 'id', 'missing_required_parameter');
    const template = body.template;
    if (template !== undefined && template !== null && (typeof template !== 'string' || !(TEMPLATE_NAMES as readonly string[]).includes(template))) {
      throw badRequest(`template must be one of ${TEMPLATE_NAMES.join(', ')}`, 'template', 'invalid_value');
    }
    const weights = typeof body.weights === 'string' && body.weights !== '' ? body.weights : undefined;
    const contextLength = optNumber(body, 'context_length', { integer: true, min: 16 });
    const current = await deps.models.load({ id, template: typeof template === 'string' ? template : undefined, contextLength, weights });
    return { current };
  });

  app.post('/api/models/unload', async () => {
    await deps.models.unload();
    return { current: null };
  });

  app.post('/api/hub/files', async (request) => {
    const ref = refOf(objectBody(request.body));
    return { ref, files: await deps.downloads.listFiles(ref) };
  });

  app.post('/api/downloads', async (request, reply) => {
    const body = objectBody(request.body);
    const ref = refOf(body);
    const files = body.files;
    if (files !== undefined && files !== null && (!Array.isArray(files) || !files.every((f) => typeof f === 'string' && f !== ''))) {
      throw badRequest('files must be an array of file paths from POST /api/hub/files', 'files', 'invalid_value');
    }
    const job = deps.downloads.start(ref, Array.isArray(files) ? (files as string[]) : null);
    return reply.code(202).send({ job });
  });

  app.get('/api/downloads', async () => ({ jobs: deps.downloads.list() }));

  app.delete<{ Params: { id: string } }>('/api/downloads/:id', async (request) => {
    if (!deps.downloads.cancel(request.params.id)) throw notFound(`no running download ${request.params.id}`);
    return { cancelled: true };
  });

  /** SSE: `progress` events while it runs, then one `end` event with the final job. */
  app.get<{ Params: { id: string } }>('/api/downloads/:id/events', async (request, reply) => {
    const job = deps.downloads.get(request.params.id);
    if (!job) throw notFound(`no download ${request.params.id}`);
    reply.hijack();
    const sse = new SseWriter(reply.raw);
    const send = (j: DownloadJob): void => {
      // The job object keeps changing: decide from its status now, not when the write settles.
      const final = j.status !== 'running';
      void sse.event(final ? 'end' : 'progress', j).then(() => {
        if (final) sse.end();
      });
    };
    if (job.status !== 'running') return send(job);
    sse.start();
    const stop = deps.downloads.watch(job.id, send);
    reply.raw.once('close', stop);
  });
}

function objectBody(body: unknown): Record<string, unknown> {
  if (!isRecord(body)) throw badRequest('the request body must be a JSON object', null, 'invalid_body');
  return body;
}

function refOf(body: Record<string, unknown>): string {
  const ref = body.ref;
  if (typeof ref !== 'string') throw badRequest('ref is required: user/repo or user/repo:branch', 'ref', 'missing_required_parameter');
  try {
    parseModelRef(ref);
  } catch (err) {
    if (err instanceof QllamaError) throw badRequest(err.message, 'ref', 'invalid_value');
    throw err;
  }
  return ref.trim();
}
