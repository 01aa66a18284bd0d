import { setImmediate as nextMacrotask } from 'node:timers/promises';
import type { DeviceSampling } from '../../backends/backend.js';
import type { TemplateChoice } from '../../chat/templateSelect.js';
import { commonPrefixLength, generate, type GeneratedToken, type GenerationRequest, type GenerationResult, type KvCacheState } from '../../generate/generator.js';
import type { TextCodec } from '../../generate/textCodec.js';
import type { BatchedLm } from '../../model/batch.js';
import type { CausalLm } from '../../model/causalLm.js';
import { EngineClosedError } from './engineClosedError.js';
import type { InferenceEngine } from './inferenceEngine.js';
import { StepLoop, type BatchStats, type StepLoopOptions } from './stepLoop.js';

/** What the engine uses of a LoadedModel (whose model is a LlamaModel); tests pass fakes. */
export interface BatchedModel {
  readonly model: BatchedLm;
  readonly tokenizer: TextCodec;
  readonly template: TemplateChoice;
  dispose(): void;
}

/**
 * Continuous batching: a LoadedModel with N sequence slots behind the engine seam. Each run holds a
 * slot (its own KV cache) while it lasts; its single-token decodes go to the shared StepLoop, which
 * runs the next token of every active run as one decode step (one batched pass, or for 1–2 runs on
 * CUDA each run's captured graph in turn: LlamaModel.decodeBatch), so runs join and leave between
 * steps. Prompt prefills run on their slot between steps, a chunk per loop turn, so a long prompt
 * delays the others' next tokens by one chunk, not by the whole prompt. Everything a run does per
 * sequence (sampling, penalties, stop strings, abort) is `generate`'s, unchanged, on a per-slot
 * CausalLm. A slot remembers the ids its cache holds, and a run takes the free slot sharing the
 * longest prefix with its prompt, so a chat's next turn feeds only its new part.
 */
export class BatchingEngine implements InferenceEngine {
  readonly maxSequences: number;
  private readonly loop: StepLoop;
  private readonly kv: KvCacheState[];
  private readonly busy: boolean[];
  /** per slot, when it was last taken (least recently used goes first among equals) */
  private readonly lastUsed: number[];
  private clock = 0;

  constructor(
    readonly id: string,
    private readonly loaded: BatchedModel,
    options: StepLoopOptions = {},
  ) {
    this.maxSequences = loaded.model.sequences;
    this.loop = new StepLoop(loaded.model, options);
    this.kv = Array.from({ length: this.maxSequences }, () => ({ cachedIds: [] }));
    this.busy = new Array<boolean>(this.maxSequences).fill(false);
    this.lastUsed = new Array<number>(this.maxSequences).fill(0);
  }

  get contextLength(): number { return this.loaded.model.contextLength; }
  get vocabSize(): number { return this.loaded.model.vocabSize; }
  get codec(): TextCodec { return this.loaded.tokenizer; }
  get template(): TemplateChoice { return this.loaded.template; }
  /** Decode-step counters (batch sizes), for /metrics. */
  get batching(): BatchStats { return this.loop.stats; }
  /** Slots held by runs now. */
  get activeSequences(): number { return this.busy.filter(Boolean).length; }

  async *run(request: GenerationRequest): AsyncGenerator<GeneratedToken, GenerationResult | undefined, undefined> {
    const slot = this.takeSlot(request.promptIds);
    const view = new LoopSlot(this.loaded.model, this.loop, slot, this.kv[slot], request.signal);
    this.loop.join();
    try {
      // Let the reply that freed the slot finish and pending I/O run before the prompt's pass.
      await nextMacrotask();
      return yield* generate(view, this.loaded.tokenizer, request, this.kv[slot]);
    } catch (err) {
      if (err instanceof EngineClosedError) return undefined; // disposed mid-run: end quietly
      throw err;
    } finally {
      view.settleCache();
      this.loop.leave();
      this.busy[slot] = false;
    }
  }

  /** The free slot whose cache shares the longest prefix with the prompt (least recently used on ties). */
  private takeSlot(promptIds: readonly number[]): number {
    let best = -1, bestShared = -1;
    for (let s = 0; s < this.maxSequences; s++) {
      if (this.busy[s]) continue;
      const shared = commonPrefixLength(this.kv[s].cachedIds, promptIds);
      if (shared > bestShared || (shared === bestShared && this.lastUsed[s] < this.lastUsed[best])) {
        best = s;
        bestShared = shared;
      }
    }
    // The scheduler admits at most maxSequences runs; one more would have no KV cache to use.
    if (best < 0) throw new Error(`BatchingEngine.run: all ${this.maxSequences} sequence slots are in use: the scheduler must admit at most maxSequences runs`);
    this.busy[best] = true;
    this.lastUsed[best] = ++this.clock;
    return best;
  }

  /**
   * Unload: runs in flight end quietly (work they have queued is refused) and the model is
   * disposed once no pass is running on it, so nothing touches a freed backend.
   */
  dispose(): void {
    this.loop.close(new EngineClosedError(`the model ${this.id} was unloaded while this run was in flight`), () => this.loaded.dispose());
  }
}

/**
 * One slot of the model as `generate` sees it: a single-token forward joins the next batched step;
 * a longer one (the prompt) is fed between steps, a chunk per loop turn (StepLoop.prefill).
 */
class LoopSlot implements CausalLm {
  /** positions the slot's cache holds after a prefill that stopped early (client gone); null: none did */
  private cutAt: number | null = null;

  constructor(
    private readonly model: BatchedLm,
    private readonly loop: StepLoop,
    private readonly slot: number,
    private readonly kv: KvCacheState,
    private readonly signal: AbortSignal | undefined,
  ) {}

  get vocabSize(): number { return this.model.vocabSize; }
  get contextLength(): number { return this.model.contextLength; }

  async forward(tokens: readonly number[], startPos: number): Promise<Float32Array> {
    if (tokens.length !== 1) return this.prefill(tokens, startPos, (t, p) => this.model.forward(t, p, this.slot), () => new Float32Array(this.vocabSize));
    return asLogits(await this.loop.decode({ slot: this.slot, token: tokens[0], pos: startPos, pick: { kind: 'logits' } }));
  }

  async forwardArgmax(tokens: readonly number[], startPos: number): Promise<number> {
    if (tokens.length !== 1) return this.prefill(tokens, startPos, (t, p) => this.model.forwardArgmax(t, p, this.slot), () => 0);
    const r = await this.loop.decode({ slot: this.slot, token: tokens[0], pos: startPos, pick: { kind: 'argmax' } });
    if (typeof r !== 'number') throw new Error('decodeBatch answered an argmax row with logits');
    return r;
  }

  async forwardSample(tokens: readonly number[], startPos: number, sampling: DeviceSampling): Promise<number | Float32Array> {
    if (tokens.length !== 1) return this.prefill(tokens, startPos, (t, p) => this.model.forwardSample(t, p, sampling, this.slot), () => 0);
    return this.loop.decode({ slot: this.slot, token: tokens[0], pos: startPos, pick: { kind: 'sample', sampling } });
  }

  /**
   * After the run: `generate` records the whole prompt as cached once the prompt's forward
   * returns, which a prefill cut short did not feed; keep only what the cache holds.
   */
  settleCache(): void {
    if (this.cutAt !== null && this.kv.cachedIds.length > this.cutAt) this.kv.cachedIds.length = this.cutAt;
  }

  /**
   * Feeds the prompt chunk by chunk (chunks before the last only fill the cache: `feed`, no
   * logits). A client that leaves stops the prefill between chunks; `placeholder()`
   * then stands in for the result, which `generate` never uses: it checks the signal before
   * taking the first token, and ends the run as 'aborted'.
   */
  private async prefill<T>(tokens: readonly number[], startPos: number, last: (t: readonly number[], p: number) => Promise<T>, placeholder: () => T): Promise<T> {
    const kv = this.kv;
    try {
      return await this.loop.prefill({
        tokens,
        startPos,
        last,
        feed: (t, p) => this.model.feed(t, p, this.slot),
        // while the prompt is fed, generate records only the reused prefix: add each chunk done
        fed: (t, p) => {
          if (kv.cachedIds.length === p) kv.cachedIds.push(...t);
        },
        signal: this.signal,
      });
    } catch (err) {
      if (!this.signal?.aborted || err instanceof EngineClosedError) throw err;
      this.cutAt = kv.cachedIds.length;
      return placeholder();
    }
  }
}

function asLogits(r: number | Float32Array): Float32Array {
  if (typeof r === 'number') throw new Error('decodeBatch answered a logits row with an id');
  return r;
}
