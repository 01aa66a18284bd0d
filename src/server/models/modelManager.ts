import path from 'node:path';
import { QllamaError } from '../../errors.js';
import { ApiError, badRequest, notFound } from '../apiError.js';
import type { InferenceEngine } from '../engine/inferenceEngine.js';
import type { EngineLoader } from '../engine/loadEngine.js';
import type { Scheduler } from '../engine/scheduler.js';
import { EMBEDDED_TEMPLATE, listLocalModels, type LocalModel } from './localModels.js';

export interface LoadRequest {
  /** A model id from the listing. */
  readonly id: string;
  readonly template?: string;
  readonly contextLength?: number;
  readonly weights?: string;
}

export interface CurrentModel {
  readonly id: string;
  readonly dir: string;
  readonly template: string;
  readonly templateReason: string;
  readonly contextLength: number;
  readonly loadedAt: number;
  readonly loadSeconds: number;
}

export interface ModelManagerOptions {
  readonly modelsDir: string;
  readonly loader: EngineLoader;
  readonly scheduler: Scheduler;
  /**
   * --max-concurrency: asked of the loader as the sequences to batch (EngineSpec.maxSequences);
   * the scheduler gets min(this, the engine's maxSequences) slots.
   */
  readonly maxConcurrency: number;
  readonly log: (line: string) => void;
}

/**
 * Owns the one loaded model. Loads and unloads run as exclusive scheduler jobs, so they wait
 * for the generations admitted before them and no generation ever sees a half-swapped model.
 */
export class ModelManager {
  private engine: InferenceEngine | null = null;
  private info: CurrentModel | null = null;
  private readonly extraDirs: string[] = [];
  private loadingId: string | null = null;

  constructor(private readonly options: ModelManagerOptions) {}

  get modelsDir(): string { return this.options.modelsDir; }
  get current(): CurrentModel | null { return this.info; }
  /** The loaded engine, if any (metrics read its batching counters). */
  get loadedEngine(): InferenceEngine | null { return this.engine; }
  /** The id being loaded right now, for the UI's status line. */
  get loading(): string | null { return this.loadingId; }

  /** Make a folder outside --models-dir known (e.g. `--model /path/to/dir`); returns its id. */
  addDir(dir: string): string {
    const resolved = path.resolve(dir);
    if (!this.extraDirs.includes(resolved)) this.extraDirs.push(resolved);
    return path.basename(resolved);
  }

  list(): Promise<LocalModel[]> {
    return listLocalModels(this.options.modelsDir, this.extraDirs);
  }

  /**
   * The engine for a request's `model` field: 404 when it names another model (so a typo is
   * not silently answered by a different model), 503 when none is loaded.
   */
  engineFor(model: string): InferenceEngine {
    const engine = this.engine;
    if (engine === null) {
      throw new ApiError(503, 'no model is loaded: load one with POST /api/models/load {"id": ...}, in the web UI\'s Model tab, or start the server with --model', 'server_error', 'model', 'model_not_loaded');
    }
    if (model !== engine.id) {
      throw notFound(`The model \`${model}\` does not exist or is not loaded: the loaded model is \`${engine.id}\` (GET /v1/models)`, 'model_not_found', 'model');
    }
    return engine;
  }

  async load(request: LoadRequest): Promise<CurrentModel> {
    const entry = (await this.list()).find((m) => m.id === request.id);
    if (!entry) throw notFound(`no model "${request.id}" in ${this.options.modelsDir}: GET /api/models lists the ones there`, 'model_not_found', 'id');
    if (entry.error !== undefined) throw badRequest(`"${entry.id}" cannot be loaded: ${entry.error}`, 'id', 'model_unloadable');
    return this.options.scheduler.exclusive(async () => {
      this.loadingId = entry.id;
      try {
        this.disposeEngine();
        const started = performance.now();
        const template = request.template ?? (entry.embedded ? EMBEDDED_TEMPLATE : undefined);
        let engine: InferenceEngine;
        try {
          engine = await this.options.loader({ id: entry.id, dir: entry.dir, template, contextLength: request.contextLength, weights: request.weights, maxSequences: this.options.maxConcurrency });
        } catch (err) {
          // A QllamaError is the user's to fix (bad template, corrupt file): say it as a 400.
          if (err instanceof QllamaError && !(err instanceof ApiError)) throw badRequest(`loading "${entry.id}" failed: ${err.name}: ${err.message}`, 'id', 'model_load_failed');
          throw err;
        }
        this.engine = engine;
        this.options.scheduler.setConcurrency(Math.max(1, Math.min(this.options.maxConcurrency, engine.maxSequences)));
        this.info = {
          id: entry.id,
          dir: entry.dir,
          template: engine.template.name,
          templateReason: request.template !== undefined ? 'chosen when loading' : (entry.settings?.templateReason ?? engine.template.reason),
          contextLength: engine.contextLength,
          loadedAt: Date.now(),
          loadSeconds: (performance.now() - started) / 1000,
        };
        this.options.log(`model ${entry.id} loaded (template ${engine.template.name}, context ${engine.contextLength})`);
        return this.info;
      } finally {
        this.loadingId = null;
      }
    });
  }

  async unload(): Promise<void> {
    await this.options.scheduler.exclusive(async () => this.disposeEngine());
  }

  dispose(): void {
    this.disposeEngine();
  }

  private disposeEngine(): void {
    const engine = this.engine;
    this.engine = null;
    this.info = null;
    engine?.dispose();
  }
}
