/**
 * The worker-thread pool shared by the fast CPU backend and the quantizer's engine: `threads − 1`
 * workers, each with the same compiled WebAssembly module instantiated on one shared memory, that
 * sleep in Atomics.wait between jobs (no spinning when idle). A job is posted in a small shared
 * Int32Array whose first words belong to the pool (below); what follows is the job's own layout,
 * read by the `JobRunner` each worker sets up from its instance (see `serveJobs`).
 */
import { Worker, workerData } from 'node:worker_threads';
import { wasmApi, type WasmInstance, type WasmMemory, type WasmModule } from './wasmAsm.js';

// control block words owned by the pool (Int32 indices); job layouts start at JOB_WORDS
export const GEN = 0; // bumped to post a job (workers Atomics.wait on it)
export const DONE = 1; // workers that finished the current job
export const READY = 2; // workers started
export const JOB = 3; // the job's kind; STOP ends the workers
export const JOB_WORDS = 4;
export const STOP = 0;

/** Runs this thread's share of the job posted in the control block. */
export type JobRunner = (ctrl: Int32Array) => void;

interface WorkerInit {
  readonly module: WasmModule;
  readonly memory: WasmMemory;
  readonly ctrl: SharedArrayBuffer;
  /** thread index (the main thread is 0) */
  readonly index: number;
}

/**
 * The main thread's side: owns the control block and starts the workers (a script calling
 * `serveJobs`) on first use. Callers write the job into `ctrl`, then either run it alone or
 * `post` it to the workers.
 */
export class WorkerPool {
  readonly ctrl: Int32Array;
  private workers: Worker[] = [];
  private started = false;

  constructor(
    private readonly script: URL,
    private readonly module: WasmModule,
    private readonly memory: WasmMemory,
    ctrlInts: number,
    /** threads including the main one; drops to 1 if the workers do not come up */
    public threads: number,
  ) {
    this.ctrl = new Int32Array(new SharedArrayBuffer(ctrlInts * 4));
  }

  /** Starts the workers on first use; false (single-threaded from then on) if they do not come up. */
  start(): boolean {
    if (this.started) return this.workers.length > 0;
    this.started = true;
    const n = this.threads - 1;
    for (let i = 1; i <= n; i++) {
      const w = new Worker(this.script, { workerData: { module: this.module, memory: this.memory, ctrl: this.ctrl.buffer, index: i } });
      w.unref();
      this.workers.push(w);
    }
    const deadline = Date.now() + 10_000;
    for (let r = Atomics.load(this.ctrl, READY); r < n; r = Atomics.load(this.ctrl, READY)) {
      if (Date.now() > deadline || Atomics.wait(this.ctrl, READY, r, 1000) === 'timed-out' && Date.now() > deadline) {
        this.stop();
        this.threads = 1;
        return false;
      }
    }
    return true;
  }

  /** Wakes the (started) workers on the job in `ctrl`, runs `own` (this thread's share), then waits for every worker. */
  post(own: () => void): void {
    const c = this.ctrl;
    Atomics.store(c, DONE, 0);
    Atomics.add(c, GEN, 1);
    Atomics.notify(c, GEN);
    own();
    const want = this.workers.length;
    for (let d = Atomics.load(c, DONE); d < want; d = Atomics.load(c, DONE)) Atomics.wait(c, DONE, d);
  }

  /** Ends the workers (a later `start` does not bring them back). */
  stop(): void {
    const c = this.ctrl;
    c[JOB] = STOP;
    Atomics.add(c, GEN, 1);
    Atomics.notify(c, GEN);
    for (const w of this.workers) void w.terminate();
    this.workers = [];
  }
}

/**
 * The worker's side, called once by a worker script: instantiates the module on the shared
 * memory, lets `setup` make the thread's runner, says ready, then runs every posted job until STOP.
 */
export function serveJobs(setup: (instance: WasmInstance, memory: WasmMemory, index: number) => JobRunner): void {
  const init = workerData as WorkerInit;
  const c = new Int32Array(init.ctrl);
  if (!wasmApi) throw new Error('WebAssembly is not available in this worker');
  const run = setup(new wasmApi.Instance(init.module, { env: { memory: init.memory } }), init.memory, init.index);
  // read the generation before saying ready: the main thread may post the first job right after
  let seen = Atomics.load(c, GEN);
  Atomics.add(c, READY, 1);
  Atomics.notify(c, READY);
  for (;;) {
    Atomics.wait(c, GEN, seen);
    const gen = Atomics.load(c, GEN);
    if (gen === seen) continue;
    seen = gen;
    if (c[JOB] === STOP) break;
    run(c);
    Atomics.add(c, DONE, 1);
    Atomics.notify(c, DONE);
  }
}
