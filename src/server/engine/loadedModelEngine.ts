import { setImmediate as nextMacrotask } from 'node:timers/promises';
import type { TemplateChoice } from '../../chat/templateSelect.js';
import type { LoadedModel } from '../../engine/loadedModel.js';
import { generate, type GeneratedToken, type GenerationRequest, type GenerationResult } from '../../generate/generator.js';
import type { TextCodec } from '../../generate/textCodec.js';
import type { InferenceEngine } from './inferenceEngine.js';

/**
 * A LoadedModel behind the engine seam: one KV cache, so one sequence at a time. Consecutive
 * requests that share a prefix (chat turns) reuse the cache through `loaded.kv`.
 */
export class LoadedModelEngine implements InferenceEngine {
  readonly maxSequences = 1;
  private busy = false;

  constructor(
    readonly id: string,
    private readonly loaded: LoadedModel,
  ) {}

  get contextLength(): number { return this.loaded.model.contextLength; }
  get vocabSize(): number { return this.loaded.model.vocabSize; }
  get codec(): TextCodec { return this.loaded.tokenizer; }
  get template(): TemplateChoice { return this.loaded.template; }

  async *run(request: GenerationRequest): AsyncGenerator<GeneratedToken, GenerationResult | undefined, undefined> {
    // The scheduler guarantees this; a second run would corrupt the shared KV cache.
    if (this.busy) throw new Error('LoadedModelEngine.run called while a run is in flight: the scheduler must admit one at a time');
    this.busy = true;
    try {
      // The prompt's forward pass runs on this thread: first let the reply that freed the slot
      // finish and pending I/O run. Between tokens the generator yields to the event loop itself.
      await nextMacrotask();
      return yield* generate(this.loaded.model, this.loaded.tokenizer, request, this.loaded.kv);
    } finally {
      this.busy = false;
    }
  }

  dispose(): void {
    this.loaded.dispose();
  }
}
