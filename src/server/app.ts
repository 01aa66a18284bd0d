import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import fastifyStatic from '@fastify/static';
import Fastify, { type FastifyInstance } from 'fastify';
import { registerApiKeyAuth } from './auth.js';
import type { EngineLoader } from './engine/loadEngine.js';
import { Scheduler } from './engine/scheduler.js';
import { registerErrorHandling } from './errorHandler.js';
import { ServerMetrics } from './metrics.js';
import { DownloadJobs } from './models/downloadJobs.js';
import type { ModelDownloader } from './models/downloader.js';
import { ModelManager } from './models/modelManager.js';
import { registerRequestMetrics } from './requestMetrics.js';
import { registerChatCompletions } from './routes/chatCompletions.js';
import { registerCompletions } from './routes/completions.js';
import type { RouteDeps } from './routes/deps.js';
import { registerHealth } from './routes/health.js';
import { registerManagement } from './routes/management.js';
import { registerOpenAiModels } from './routes/models.js';

export interface ServerOptions {
  readonly modelsDir: string;
  readonly loader: EngineLoader;
  /** --api-key: Bearer auth on /v1 and /api. */
  readonly apiKey?: string;
  /** --max-concurrency: generations at once, capped by what the engine can batch (default 1). */
  readonly maxConcurrency?: number;
  /** --max-queue: requests that may wait for a slot; one more gets 429 (default 32). */
  readonly maxQueued?: number;
  /** --max-body: request body limit in bytes (default 1 MiB). */
  readonly bodyLimit?: number;
  /** null: no downloads (501). */
  readonly downloader?: ModelDownloader | null;
  /** The built web UI (web/dist); null: none. Default: web/dist of this package. */
  readonly webRoot?: string | null;
  readonly log?: (line: string) => void;
}

/** web/dist beside the compiled server (dist/src/server → repo root). */
export const DEFAULT_WEB_ROOT = fileURLToPath(new URL('../../../web/dist', import.meta.url));

/**
 * The HTTP server: OpenAI-compatible API, model management, health and metrics, and the web
 * UI, on fastify. Holds the model manager and the scheduler; `close()` stops accepting,
 * aborts nothing in flight beyond what fastify closes, and disposes the model.
 */
export class QllamaServer implements AsyncDisposable {
  private constructor(
    readonly app: FastifyInstance,
    readonly models: ModelManager,
    readonly scheduler: Scheduler,
    readonly metrics: ServerMetrics,
    private readonly downloads: DownloadJobs,
  ) {}

  static async create(options: ServerOptions): Promise<QllamaServer> {
    const log = options.log ?? (() => {});
    const maxConcurrency = options.maxConcurrency ?? 1;
    const scheduler = new Scheduler({ maxConcurrent: 1, maxQueued: options.maxQueued ?? 32 });
    const metrics = new ServerMetrics();
    scheduler.onChange = () => {
      metrics.queueDepth.set(scheduler.queuedCount);
      metrics.running.set(scheduler.runningCount);
    };
    const models = new ModelManager({ modelsDir: options.modelsDir, loader: options.loader, scheduler, maxConcurrency, log });
    metrics.batchSource = () => models.loadedEngine?.batching;
    const downloads = new DownloadJobs(options.downloader ?? null, options.modelsDir);
    const app = Fastify({ logger: false, bodyLimit: options.bodyLimit ?? 1024 * 1024, forceCloseConnections: true });
    const deps: RouteDeps = { models, scheduler, metrics, downloads, startedAt: Date.now() };

    registerErrorHandling(app, log);
    registerRequestMetrics(app, metrics);
    if (options.apiKey !== undefined && options.apiKey !== '') registerApiKeyAuth(app, options.apiKey);
    registerHealth(app, deps);
    registerOpenAiModels(app, deps);
    registerChatCompletions(app, deps);
    registerCompletions(app, deps);
    registerManagement(app, deps);
    await registerWebUi(app, options.webRoot === undefined ? DEFAULT_WEB_ROOT : options.webRoot);
    await app.ready();
    return new QllamaServer(app, models, scheduler, metrics, downloads);
  }

  /** Listen and return the base URL (port 0 picks a free port). */
  async listen(host: string, port: number): Promise<string> {
    await this.app.listen({ host, port });
    const addr = this.app.server.address();
    if (addr === null || typeof addr === 'string') throw new Error('the server has no TCP address');
    const shownHost = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    return `http://${shownHost}:${addr.port}`;
  }

  async close(): Promise<void> {
    this.downloads.dispose();
    await this.app.close();
    this.models.dispose();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

async function registerWebUi(app: FastifyInstance, webRoot: string | null): Promise<void> {
  if (webRoot !== null && existsSync(path.join(webRoot, 'index.html'))) {
    await app.register(fastifyStatic, { root: webRoot, index: 'index.html', wildcard: true });
    return;
  }
  app.get('/', async (_request, reply) => reply.type('text/plain; charset=utf-8').send(
    'qllama serve: the API is up (/v1/models, /health), but the web UI is not built.\nRun `npm run build:web` in the qllama checkout, then restart the server.\n',
  ));
}
