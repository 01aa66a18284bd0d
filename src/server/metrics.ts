import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { BatchStats } from './engine/stepLoop.js';

/**
 * The server's Prometheus metrics, on a registry of its own (no prom-client global), so two
 * servers in one process (tests) do not share counters.
 */
export class ServerMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({ name: 'qllama_http_requests_total', help: 'HTTP requests answered, by route and status', labelNames: ['route', 'method', 'status'] as const, registers: [this.registry] });
  readonly requestSeconds = new Histogram({ name: 'qllama_http_request_duration_seconds', help: 'HTTP request latency, by route', labelNames: ['route'] as const, buckets: [0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120], registers: [this.registry] });
  readonly generations = new Counter({ name: 'qllama_generations_total', help: 'Generations finished, by finish reason', labelNames: ['finish_reason'] as const, registers: [this.registry] });
  readonly promptTokens = new Counter({ name: 'qllama_prompt_tokens_total', help: 'Prompt tokens of finished generations', registers: [this.registry] });
  readonly completionTokens = new Counter({ name: 'qllama_completion_tokens_total', help: 'Tokens generated', registers: [this.registry] });
  readonly tokensPerSecond = new Gauge({ name: 'qllama_generation_tokens_per_second', help: 'Decode speed of the last finished generation', registers: [this.registry] });
  readonly queueDepth = new Gauge({ name: 'qllama_queue_depth', help: 'Generation requests waiting for a slot', registers: [this.registry] });
  readonly running = new Gauge({ name: 'qllama_running_requests', help: 'Generations running now', registers: [this.registry] });
  readonly queueSeconds = new Histogram({ name: 'qllama_queue_wait_seconds', help: 'Time from arrival to a free slot', buckets: [0.001, 0.01, 0.1, 0.5, 1, 5, 15, 60], registers: [this.registry] });
  readonly firstTokenSeconds = new Histogram({ name: 'qllama_time_to_first_token_seconds', help: 'Time from slot to first token (prompt processing)', buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers: [this.registry] });
  readonly generationSeconds = new Histogram({ name: 'qllama_generation_duration_seconds', help: 'Time from slot to last token', buckets: [0.05, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300], registers: [this.registry] });
  /** The loaded engine's decode-step counters, read at scrape time (set by the server; undefined: none). */
  batchSource: () => BatchStats | undefined = () => undefined;
  readonly batchSize = new Gauge({
    name: 'qllama_batch_size', help: 'Sequences decoded together in the last decode step (batching engine, --max-concurrency > 1)', registers: [this.registry],
    collect: () => { this.batchSize.set(this.batchSource()?.lastBatchSize ?? 0); },
  });
  readonly decodeSteps = new Counter({
    name: 'qllama_decode_steps_total', help: 'Batched decode steps (one token for each running sequence) run by the loaded model', registers: [this.registry],
    collect: () => { setCounter(this.decodeSteps, this.batchSource()?.steps ?? 0); },
  });
  readonly decodeRows = new Counter({
    name: 'qllama_decode_step_sequences_total', help: 'Sequences over all batched decode steps (divided by the steps: the mean batch size)', registers: [this.registry],
    collect: () => { setCounter(this.decodeRows, this.batchSource()?.rows ?? 0); },
  });
  readonly prefillChunks = new Counter({
    name: 'qllama_prefill_chunks_total', help: 'Prompt chunks fed between batched decode steps (batching engine: long prompts go in chunks)', registers: [this.registry],
    collect: () => { setCounter(this.prefillChunks, this.batchSource()?.prefillChunks ?? 0); },
  });
  readonly rejected = new Counter({ name: 'qllama_rejected_requests_total', help: 'Requests refused before generating, by reason', labelNames: ['reason'] as const, registers: [this.registry] });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'qllama_' });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}

/** A counter mirrored from a total kept elsewhere (prom-client counters only go up by inc). */
function setCounter(c: Counter, total: number): void {
  c.reset();
  if (total > 0) c.inc(total);
}
