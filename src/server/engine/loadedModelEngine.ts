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
      const it = generate(this.loaded.model, this.loaded.tokenizer, request, this.loaded.kv);
      for (;;) {
        // The CPU forward pass runs on this thread; yielding to the event loop between tokens
        // lets the server flush SSE writes, notice disconnects and accept new requests.
        await nextMacrotask();
        const step = await it.next();
        if (step.done === true) return step.value;
        yield step.value;
      }
    } finally {
      this.busy = false;
    }
  }

  dispose(): void {
    this.loaded.dispose();
  }
}
