import { ApiError } from '../apiError.js';

export interface SchedulerOptions {
  /** Runs admitted at once (the engine's maxSequences caps it). */
  readonly maxConcurrent: number;
  /** Requests allowed to wait; one more is answered 429. */
  readonly maxQueued: number;
}

/** A held place among the running requests; `release` (or `using`) gives it back once. */
export interface Slot extends Disposable {
  release(): void;
}

interface Waiter {
  readonly exclusive: boolean;
  readonly grant: () => void;
}

/**
 * Fair admission: a FIFO queue in front of `maxConcurrent` slots. A freed slot always goes to
 * the oldest waiter, so a stream of short requests cannot starve an earlier long one.
 * `exclusive` jobs (model load/unload) wait their turn in the same queue and run alone.
 * A waiter whose signal aborts (its client disconnected) leaves the queue at once.
 */
export class Scheduler {
  private running = 0;
  private exclusiveRunning = false;
  private readonly queue: Waiter[] = [];
  private maxConcurrent: number;
  private readonly maxQueued: number;
  /** Called whenever running or queued changes (metrics). */
  onChange: () => void = () => {};

  constructor(options: SchedulerOptions) {
    if (!Number.isInteger(options.maxConcurrent) || options.maxConcurrent < 1) throw new RangeError('maxConcurrent must be an integer ≥ 1');
    if (!Number.isInteger(options.maxQueued) || options.maxQueued < 0) throw new RangeError('maxQueued must be an integer ≥ 0');
    this.maxConcurrent = options.maxConcurrent;
    this.maxQueued = options.maxQueued;
  }

  get runningCount(): number { return this.running; }
  /** Generation requests waiting (exclusive jobs are not counted against the limit). */
  get queuedCount(): number { return this.queue.filter((w) => !w.exclusive).length; }
  get concurrency(): number { return this.maxConcurrent; }

  /** Change the number of slots (a new engine may batch more or fewer sequences). */
  setConcurrency(n: number): void {
    if (!Number.isInteger(n) || n < 1) throw new RangeError('concurrency must be an integer ≥ 1');
    this.maxConcurrent = n;
    this.pump();
  }

  /**
   * Wait for a slot. Throws a 429 ApiError at once when `maxQueued` requests already wait,
   * and rejects with the signal's reason if it aborts before the slot comes.
   */
  acquire(signal?: AbortSignal): Promise<Slot> {
    if (signal?.aborted) return Promise.reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
    if (this.queue.length === 0 && this.canRun(false)) {
      this.running++;
      this.onChange();
      return Promise.resolve(this.slot());
    }
    if (this.queuedCount >= this.maxQueued) {
      return Promise.reject(new ApiError(429, `the server is busy: ${this.running} request(s) running and ${this.queuedCount} queued (--max-queue ${this.maxQueued}); retry later`, 'rate_limit_error', null, 'queue_full'));
    }
    return new Promise<Slot>((resolve, reject) => {
      const onAbort = (): void => {
        const i = this.queue.indexOf(waiter);
        if (i >= 0) this.queue.splice(i, 1);
        this.onChange();
        this.pump(); // an exclusive job behind it may now be at the head
        reject(signal?.reason instanceof Error ? signal.reason : new Error('aborted while queued'));
      };
      const waiter: Waiter = {
        exclusive: false,
        grant: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve(this.slot());
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.queue.push(waiter);
      this.onChange();
    });
  }

  /** Run `fn` alone: after everything queued before it, with nothing else running. */
  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    await new Promise<void>((resolve) => {
      if (this.queue.length === 0 && this.canRun(true)) {
        this.exclusiveRunning = true;
        resolve();
        return;
      }
      this.queue.push({ exclusive: true, grant: resolve });
      this.onChange();
    });
    try {
      return await fn();
    } finally {
      this.exclusiveRunning = false;
      this.pump();
    }
  }

  private canRun(exclusive: boolean): boolean {
    if (this.exclusiveRunning) return false;
    return exclusive ? this.running === 0 : this.running < this.maxConcurrent;
  }

  private slot(): Slot {
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      this.running--;
      this.pump();
    };
    return { release, [Symbol.dispose]: release };
  }

  /** Admit waiters from the head while they fit; strict FIFO, so the head blocks those behind it. */
  private pump(): void {
    while (this.queue.length > 0) {
      const head = this.queue[0];
      if (!this.canRun(head.exclusive)) break;
      this.queue.shift();
      if (head.exclusive) this.exclusiveRunning = true;
      else this.running++;
      head.grant();
    }
    this.onChange();
  }
}
