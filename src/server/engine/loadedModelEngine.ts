import { setImmediate as nextMacrotask } from 'node:timers/promises';
import type { DeviceSampling } from '../../backends/backend.js';
import type { TemplateChoice } from '../../chat/templateSelect.js';
import type { LoadedModel } from '../../engine/loadedModel.js';
import { generate, type GeneratedToken, type GenerationRequest, type GenerationResult } from '../../generate/generator.js';
import type { TextCodec } from '../../generate/textCodec.js';
import type { CausalLm } from '../../model/causalLm.js';
import { EngineClosedError } from './engineClosedError.js';
import type { InferenceEngine } from './inferenceEngine.js';

/**
 * A LoadedModel behind the engine seam: one KV cache, so one sequence at a time. Consecutive
 * requests that share a prefix (chat turns) reuse the cache through `loaded.kv`.
 */
export class LoadedModelEngine implements InferenceEngine {
  readonly maxSequences = 1;
  private busy = false;
  private readonly guarded: ClosableLm;

  constructor(
    readonly id: string,
    private readonly loaded: LoadedModel,
  ) {
    this.guarded = new ClosableLm(loaded.model);
  }

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
      return yield* generate(this.guarded, this.loaded.tokenizer, request, this.loaded.kv);
    } catch (err) {
      if (err instanceof EngineClosedError) return undefined; // disposed mid-run: end quietly
      throw err;
    } finally {
      this.busy = false;
    }
  }

  /** Unload. A forward pass runs synchronously, so none is in progress now; a run in flight ends at its next one. */
  dispose(): void {
    if (this.guarded.closed) return;
    this.guarded.closed = true;
    this.loaded.dispose();
  }
}

/** The model, refusing every pass once `closed` (its backend is freed then). */
class ClosableLm implements CausalLm {
  closed = false;

  constructor(private readonly model: CausalLm & Required<Pick<CausalLm, 'forwardArgmax' | 'forwardSample'>>) {}

  get vocabSize(): number { return this.model.vocabSize; }
  get contextLength(): number { return this.model.contextLength; }

  forward(tokens: readonly number[], startPos: number): Promise<Float32Array> {
    this.check();
    return this.model.forward(tokens, startPos);
  }

  forwardArgmax(tokens: readonly number[], startPos: number): Promise<number> {
    this.check();
    return this.model.forwardArgmax(tokens, startPos);
  }

  forwardSample(tokens: readonly number[], startPos: number, sampling: DeviceSampling): Promise<number | Float32Array> {
    this.check();
    return this.model.forwardSample(tokens, startPos, sampling);
  }

  private check(): void {
    if (this.closed) throw new EngineClosedError('the model was unloaded while this run was in flight');
  }
}
