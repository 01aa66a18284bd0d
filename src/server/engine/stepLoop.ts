import type { BatchedLm, DecodeRow, RowResult } from '../../model/batch.js';

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

/**
 * The one place a batched model is driven from (the backend is not re-entrant). Runs send
 * single-token decodes with `decode` and anything else (prompt prefill) with `exclusive`; a turn
 * of the loop coalesces every pending decode into one `decodeBatch`, then runs the exclusive jobs
 * one after another, never overlapping a step. A turn waits (a few event-loop turns at most) until
 * every member run has sent its work, so the runs in flight decode together.
 */
export class StepLoop {
  private decodes: PendingDecode[] = [];
  private jobs: (() => Promise<void>)[] = [];
  private members = 0;
  private scheduled = false;
  private running = false;
  private waited = 0;
  readonly stats: BatchStats = { steps: 0, rows: 0, lastBatchSize: 0, maxBatchSize: 0 };

  constructor(private readonly model: BatchedLm) {}

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
    return new Promise<RowResult>((resolve, reject) => {
      this.decodes.push({ row, resolve, reject });
      this.kick();
    });
  }

  /** Run `fn` alone on the model, between steps. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.jobs.push(() => fn().then(resolve, reject));
      this.kick();
    });
  }

  private kick(): void {
    if (this.scheduled || this.running) return;
    this.scheduled = true;
    setImmediate(() => void this.turn());
  }

  private async turn(): Promise<void> {
    this.scheduled = false;
    const pending = this.decodes.length + this.jobs.length;
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
      for (const job of this.jobs.splice(0)) await job();
    } finally {
      this.running = false;
      if (this.decodes.length + this.jobs.length > 0) this.kick();
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
