import type { BackendKind } from '../../backends/select.js';
import { LoadedModel } from '../../engine/loadedModel.js';
import { BatchingEngine } from './batchingEngine.js';
import type { InferenceEngine } from './inferenceEngine.js';
import { LoadedModelEngine } from './loadedModelEngine.js';

/** What a load asks for: a folder plus the user's overrides (template, context, weights file). */
export interface EngineSpec {
  readonly id: string;
  readonly dir: string;
  readonly template?: string;
  readonly contextLength?: number;
  readonly weights?: string;
  /** Sequences to decode together (--max-concurrency): above 1, a batching engine with one KV cache each. */
  readonly maxSequences?: number;
}

export type EngineLoader = (spec: EngineSpec) => Promise<InferenceEngine>;

/**
 * The loader `qllama serve` uses: a LoadedModel on the chosen backend, behind the one-at-a-time
 * engine, or behind the batching engine with `spec.maxSequences` slots when that is above 1.
 * Tests pass fakes instead.
 */
export function loadedModelLoader(backend: BackendKind, log: (line: string) => void): EngineLoader {
  return async (spec) => {
    const loaded = await LoadedModel.load({
      dir: spec.dir,
      weights: spec.weights,
      backend,
      contextLength: spec.contextLength,
      template: spec.template,
      sequences: Math.max(1, spec.maxSequences ?? 1),
      log,
    });
    return loaded.model.sequences > 1 ? new BatchingEngine(spec.id, loaded) : new LoadedModelEngine(spec.id, loaded);
  };
}
