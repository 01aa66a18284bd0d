import type { GeneratedToken, GenerationResult } from '../../generate/generator.js';
import type { InferenceEngine } from '../engine/inferenceEngine.js';
import type { Scheduler } from '../engine/scheduler.js';
import type { ServerMetrics } from '../metrics.js';
import type { ModelManager } from '../models/modelManager.js';
import type { PreparedRequest } from './prompt.js';

export interface SessionDeps {
  readonly models: ModelManager;
  readonly scheduler: Scheduler;
  readonly metrics: ServerMetrics;
}

/** A generation that holds its slot: iterate `tokens` once; the slot is freed when it ends. */
export interface GenerationSession {
  readonly engine: InferenceEngine;
  readonly request: PreparedRequest;
  readonly tokens: AsyncGenerator<GeneratedToken, GenerationResult | undefined, undefined>;
  /** Stop early and free the slot (idempotent; also right after the last token). */
  close(): Promise<void>;
}

/**
 * Validate, queue, and start one generation: the single path behind streaming and
 * non-streaming replies of both endpoints. Everything that can fail with a status code
 * (unknown model 404, context 400, queue full 429) fails here, before any byte is sent.
 * `signal` is the client's: aborting it leaves the queue, or stops decoding between tokens.
 */
export async function startGeneration(
  deps: SessionDeps,
  model: string,
  prepare: (engine: InferenceEngine) => PreparedRequest,
  signal: AbortSignal,
): Promise<GenerationSession> {
  // Fail fast (before queueing) on the model and the request itself.
  const queuedFor = deps.models.engineFor(model);
  const queuedRequest = prepare(queuedFor);
  const arrived = performance.now();
  let slot;
  try {
    slot = await deps.scheduler.acquire(signal);
  } catch (err) {
    deps.metrics.rejected.inc({ reason: signal.aborted ? 'client_gone' : 'queue_full' });
    throw err;
  }
  try {
    deps.metrics.queueSeconds.observe((performance.now() - arrived) / 1000);
    // A load may have swapped the model while this request waited: check, and prepare again if so.
    const engine = deps.models.engineFor(model);
    const request = engine === queuedFor ? queuedRequest : prepare(engine);
    const tokens = run(deps, engine, request, signal, slot);
    const held = slot;
    return {
      engine,
      request,
      tokens,
      async close() {
        // Stop the run first (its finally frees the engine), then release: a generator that
        // never started does not run its finally on return(), so release here as well.
        await tokens.return(undefined);
        held.release();
      },
    };
  } catch (err) {
    slot.release();
    throw err;
  }
}

async function* run(
  deps: SessionDeps,
  engine: InferenceEngine,
  request: PreparedRequest,
  signal: AbortSignal,
  slot: { release(): void },
): AsyncGenerator<GeneratedToken, GenerationResult | undefined, undefined> {
  const started = performance.now();
  let first = true;
  const it = engine.run({ ...request, signal });
  try {
    for (;;) {
      const step = await it.next();
      if (step.done === true) {
        const r = step.value;
        if (r === undefined) return undefined; // the engine was stopped from outside
        const seconds = (performance.now() - started) / 1000;
        deps.metrics.generations.inc({ finish_reason: r.finishReason });
        deps.metrics.promptTokens.inc(r.promptTokenIds.length);
        deps.metrics.completionTokens.inc(r.tokenIds.length);
        deps.metrics.generationSeconds.observe(seconds);
        if (r.tokenIds.length > 0 && seconds > 0) deps.metrics.tokensPerSecond.set(r.tokenIds.length / seconds);
        return r;
      }
      if (first) {
        first = false;
        deps.metrics.firstTokenSeconds.observe((performance.now() - started) / 1000);
      }
      yield step.value;
    }
  } finally {
    // Runs on normal end, on error, and when the consumer stops iterating (client gone):
    // end the engine's run before the slot goes to the next request.
    await it.return(undefined);
    slot.release();
  }
}
