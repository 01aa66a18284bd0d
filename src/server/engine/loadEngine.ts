import type { BackendKind } from '../../backends/select.js';
import { LoadedModel } from '../../engine/loadedModel.js';
import type { InferenceEngine } from './inferenceEngine.js';
import { LoadedModelEngine } from './loadedModelEngine.js';

/** What a load asks for: a folder plus the user's overrides (template, context, weights file). */
export interface EngineSpec {
  readonly id: string;
  readonly dir: string;
  readonly template?: string;
  readonly contextLength?: number;
  readonly weights?: string;
}

export type EngineLoader = (spec: EngineSpec) => Promise<InferenceEngine>;

/** The loader `qllama serve` uses: a LoadedModel on the chosen backend. Tests pass fakes instead. */
export function loadedModelLoader(backend: BackendKind, log: (line: string) => void): EngineLoader {
  return async (spec) => {
    const loaded = await LoadedModel.load({
      dir: spec.dir,
      weights: spec.weights,
      backend,
      contextLength: spec.contextLength,
      template: spec.template,
      log,
    });
    return new LoadedModelEngine(spec.id, loaded);
  };
}
