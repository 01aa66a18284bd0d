import type { BatchedLm, DecodeRow, RowResult } from '../../model/batch.js';
import { PromptJob, type LoopJob, type Prefill } from './promptJob.js';

/** Counters of the decode steps a StepLoop has run (read by /metrics). */
export interface BatchStats {
  /** batched decode steps run */
  steps: number;
  /** rows over all steps (rows / steps = mean batch size) */
  rows: number;
  /** rows of the last step (0 before the first) */
  lastBatchSize: number;
  /** most rows in one step so far */
  maxBatchSize: number;
  /** prompt chunks fed (a prompt longer than StepLoop.prefillRows takes several) */
  prefillChunks: number;
}

interface PendingDecode {
  readonly row: DecodeRow;
  readonly resolve: (r: RowResult) => void;
  readonly reject: (err: unknown) => void;
}

/**
 * Event-loop turns a step waits for runs that have not sent their next token yet. A run sends it
 * one turn after its last token was handed out (the generator yields to the event loop between
 * tokens), so two or three turns suffice; the bound keeps a stalled consumer from holding back
 * the others for longer than a few turns.
 */
const MAX_WAIT_TURNS = 8;

export interface StepLoopOptions {
  /**
   * Prompt rows fed per turn (at least one chunk runs): a longer prompt is fed in chunks of this
   * many, one per turn, so the runs decoding meanwhile wait one chunk's time per token, not the
   * whole prompt's. Default: the model's own chunk (BatchedLm.chunkRows, else 256).
   */
  readonly prefillRows?: number;
}

/**
 * The one place a batched model is driven from (the backend is not re-entrant). Runs send
 * single-token decodes with `decode` and prompts with `prefill`; a turn of the loop coalesces every
 * pending decode into one `decodeBatch`, then feeds prompt chunks, oldest prompt first, up to
 * `prefillRows` rows, never overlapping a step. A turn waits (a few event-loop turns at most) until
 * every member run has sent its work, so the runs in flight decode together, and a long prompt's
 * chunks alternate with the others' decode steps.
 */
export class StepLoop {
  readonly prefillRows: number;
  readonly stats: BatchStats = { steps: 0, rows: 0, lastBatchSize: 0, maxBatchSize: 0, prefillChunks: 0 };
  private decodes: PendingDecode[] = [];
  private readonly jobs: LoopJob[] = [];
  private members = 0;
  private scheduled = false;
  private running = false;
  private waited = 0;
  private closedBy: Error | null = null;
  private onIdle: (() => void) | null = null;

  constructor(
    private readonly model: BatchedLm,
    options: StepLoopOptions = {},
  ) {
    this.prefillRows = options.prefillRows ?? model.chunkRows ?? 256;
    if (!Number.isInteger(this.prefillRows) || this.prefillRows < 1) throw new RangeError(`prefillRows must be an integer ≥ 1, got ${this.prefillRows}`);
  }

  /** A run starts: steps wait for its work too until it `leave`s. */
  join(): void {
    this.members++;
  }

  leave(): void {
    this.members--;
    this.kick(); // the others may have been waiting for this one
  }

  /** The row's result once the step that carries it has run. */
  decode(row: DecodeRow): Promise<RowResult> {
    if (this.closedBy) return Promise.reject(this.closedBy);
    return new Promise<RowResult>((resolve, reject) => {
      this.decodes.push({ row, resolve, reject });
      this.kick();
    });
  }

  /** Feed a prompt, a chunk per turn between steps; resolves with the last chunk's result. */
  prefill<T>(prefill: Prefill<T>): Promise<T> {
    if (this.closedBy) return Promise.reject(this.closedBy);
    const job = new PromptJob(prefill, this.prefillRows);
    this.jobs.push(job);
    this.kick();
    return job.result;
  }

  /**
   * Refuse all work from now on: what is queued rejects with `reason`, later calls too. `idle` is
   * called once no model call is running (at once if none is), so the model can be disposed then.
   */
  close(reason: Error, idle: () => void): void {
    if (this.closedBy) return;
    this.closedBy = reason;
    for (const d of this.decodes.splice(0)) d.reject(reason);
    for (const j of this.jobs.splice(0)) j.cancel(reason);
    if (this.running) this.onIdle = idle;
    else idle();
  }

  private kick(): void {
    if (this.scheduled || this.running || this.closedBy) return;
    this.scheduled = true;
    setImmediate(() => void this.turn());
  }

  private async turn(): Promise<void> {
    this.scheduled = false;
    if (this.closedBy) return;
    const pending = this.decodes.length + this.jobs.filter((j) => !j.settled).length;
    if (pending === 0) return;
    if (pending < this.members && this.waited < MAX_WAIT_TURNS) {
      this.waited++;
      this.kick();
      return;
    }
    this.waited = 0;
    this.running = true;
    try {
      await this.step(this.decodes.splice(0));
      await this.feedPrompts();
    } finally {
      this.running = false;
      const idle = this.onIdle;
      this.onIdle = null;
      if (idle) idle();
      else if (this.decodes.length + this.jobs.length > 0) this.kick();
    }
  }

  /** Prompt chunks, oldest prompt first, while they fit the turn's budget (the first always runs). */
  private async feedPrompts(): Promise<void> {
    let rows = 0;
    while (!this.closedBy && this.jobs.length > 0) {
      const job = this.jobs[0];
      if (!job.settled) {
        if (rows > 0 && rows + job.nextRows > this.prefillRows) return;
        rows += job.nextRows;
        try {
          if (await job.runPiece()) this.stats.prefillChunks++;
        } catch (err) {
          // runPiece settles its own failures; anything else must still fail only that job
          job.cancel(err instanceof Error ? err : new Error(String(err)));
        }
      }
      if (job.settled && this.jobs[0] === job) this.jobs.shift();
      else if (!job.settled) return; // a long prompt's next chunk waits for the next turn
    }
  }

  private async step(batch: readonly PendingDecode[]): Promise<void> {
    if (batch.length === 0) return;
    let results: RowResult[];
    try {
      results = await this.model.decodeBatch(batch.map((p) => p.row));
    } catch (err) {
      if (batch.length === 1) {
        batch[0].reject(err);
        return;
      }
      // One bad row (e.g. past the context) must not fail the others: run each alone.
      for (const p of batch) await this.step([p]);
      return;
    }
    const s = this.stats;
    s.steps++;
    s.rows += batch.length;
    s.lastBatchSize = batch.length;
    s.maxBatchSize = Math.max(s.maxBatchSize, batch.length);
    batch.forEach((p, t) => p.resolve(results[t]));
  }
}
