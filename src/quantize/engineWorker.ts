/** A compute thread of the quantizer's engine: sleeps in Atomics.wait until the main thread posts a job. */
import { workerData } from 'node:worker_threads';
import { DONE, GEN, Job, KIND, READY, TaskContext, runTasks } from './engineJobs.js';
import { gemmExports, wasmApi, type WasmMemory, type WasmModule } from './wasmGemm.js';

interface WorkerInit {
  readonly module: WasmModule;
  readonly memory: WasmMemory;
  readonly ctrl: SharedArrayBuffer;
  /** thread index (the main thread is 0) */
  readonly index: number;
}

const init = workerData as WorkerInit;
const c = new Int32Array(init.ctrl);
if (!wasmApi) throw new Error('WebAssembly is not available in this worker');
const ctx = new TaskContext(gemmExports(new wasmApi.Instance(init.module, { env: { memory: init.memory } })), init.memory, init.index);
// read the generation before saying ready: the main thread may post the first job right after
let seen = Atomics.load(c, GEN);
Atomics.add(c, READY, 1);
Atomics.notify(c, READY);
for (;;) {
  Atomics.wait(c, GEN, seen);
  const gen = Atomics.load(c, GEN);
  if (gen === seen) continue;
  seen = gen;
  if (c[KIND] === Job.Stop) break;
  runTasks(ctx, c);
  Atomics.add(c, DONE, 1);
  Atomics.notify(c, DONE);
}
