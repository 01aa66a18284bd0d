import type { TemplateChoice } from '../../chat/templateSelect.js';
import type { GeneratedToken, GenerationRequest, GenerationResult } from '../../generate/generator.js';
import type { TextCodec } from '../../generate/textCodec.js';
import type { BatchStats } from './stepLoop.js';

/**
 * The seam between the HTTP layer and a loaded model. The scheduler admits at most
 * `maxSequences` runs at once: 1 for a model with one KV cache (LoadedModelEngine); the
 * batching engine (BatchingEngine: several KV caches, sequences joining and leaving between
 * decode steps) reports more and is called concurrently, and nothing above this interface changes.
 */
export interface InferenceEngine {
  /** The model id clients send as `model` (the folder name). */
  readonly id: string;
  readonly contextLength: number;
  readonly vocabSize: number;
  readonly codec: TextCodec;
  readonly template: TemplateChoice;
  /** How many runs may be in flight together. */
  readonly maxSequences: number;
  /** Decode-step counters of a batching engine (absent: one sequence at a time). */
  readonly batching?: BatchStats;
  /** Stream one generation; the request's signal stops it between tokens. */
  run(request: GenerationRequest): AsyncGenerator<GeneratedToken, GenerationResult | undefined, undefined>;
  dispose(): void;
}
