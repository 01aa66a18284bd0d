/** A prompt prefill as the StepLoop runs it: chunk by chunk, between decode steps. */
export interface Prefill<T> {
  /** the prompt ids to feed, at positions startPos.. */
  readonly tokens: readonly number[];
  readonly startPos: number;
  /** feeds a chunk that is not the last (only its KV rows matter) */
  readonly feed: (tokens: readonly number[], pos: number) => Promise<unknown>;
  /** feeds the last chunk; its result is the prefill's */
  readonly last: (tokens: readonly number[], pos: number) => Promise<T>;
  /** after each chunk but the last: the slot's cache now holds `tokens` at `pos`.. */
  readonly fed?: (tokens: readonly number[], pos: number) => void;
  /** once it aborts, no further chunk runs and the prefill rejects with its reason */
  readonly signal?: AbortSignal;
}

/** What the StepLoop queues besides decodes: work it runs a piece per turn, oldest first. */
export interface LoopJob {
  /** finished, failed or cancelled: the loop drops it */
  readonly settled: boolean;
  /** prompt rows the next piece feeds (counted against the turn's prefill budget) */
  readonly nextRows: number;
  /** runs the next piece; never rejects (the job settles its own promise); false: it ran nothing on the model */
  runPiece(): Promise<boolean>;
  /** the loop closed: reject without running anything more */
  cancel(reason: Error): void;
}

/**
 * A prefill split into chunks of `chunkRows`. Chunks start at the prompt's first fed id, as
 * LlamaModel.forward chunks a whole prompt, so with the model's own chunk size the passes (and
 * the logits) are the same as one forward call's. An abort settles the job at once when no chunk
 * is running, so a client that left frees its slot without waiting for the queue.
 */
export class PromptJob<T> implements LoopJob {
  readonly result: Promise<T>;
  settled = false;
  private done = 0;
  private running = false;
  private resolve!: (value: T) => void;
  private reject!: (reason: unknown) => void;

  constructor(
    private readonly prefill: Prefill<T>,
    private readonly chunkRows: number,
  ) {
    if (!Number.isInteger(chunkRows) || chunkRows < 1) throw new RangeError(`chunkRows must be an integer ≥ 1, got ${chunkRows}`);
    this.result = new Promise<T>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    prefill.signal?.addEventListener('abort', this.onAbort, { once: true });
  }

  get nextRows(): number {
    return Math.min(this.chunkRows, this.prefill.tokens.length - this.done);
  }

  async runPiece(): Promise<boolean> {
    const p = this.prefill;
    if (this.settled) return false;
    if (p.signal?.aborted) {
      this.settle(() => this.reject(abortReason(p.signal)));
      return false;
    }
    const rows = this.nextRows, pos = p.startPos + this.done;
    const chunk = p.tokens.slice(this.done, this.done + rows);
    this.running = true;
    try {
      if (this.done + rows === p.tokens.length) {
        const value = await p.last(chunk, pos);
        this.settle(() => this.resolve(value));
        return true;
      }
      await p.feed(chunk, pos);
      this.done += rows;
      p.fed?.(chunk, pos);
    } catch (err) {
      this.settle(() => this.reject(err));
      return true;
    } finally {
      this.running = false;
    }
    if (p.signal?.aborted) this.settle(() => this.reject(abortReason(p.signal)));
    return true;
  }

  cancel(reason: Error): void {
    this.settle(() => this.reject(reason));
  }

  /** Between chunks, an abort ends the job now; during one, runPiece sees it when the chunk is done. */
  private readonly onAbort = (): void => {
    if (!this.running) this.settle(() => this.reject(abortReason(this.prefill.signal)));
  };

  private settle(how: () => void): void {
    if (this.settled) return;
    this.settled = true;
    this.prefill.signal?.removeEventListener('abort', this.onAbort);
    how();
  }
}

function abortReason(signal: AbortSignal | undefined): Error {
  const reason: unknown = signal?.reason;
  return reason instanceof Error ? reason : new Error('the prefill was aborted');
}
