/** A compute thread of the quantizer's engine: sleeps in Atomics.wait until the main thread posts a job. */
import { serveJobs } from '../backends/cpu/fast/pool.js';
import { TaskContext, runTasks } from './engineJobs.js';
import { gemmExports } from './wasmGemm.js';

serveJobs((instance, memory, index) => {
  const ctx = new TaskContext(gemmExports(instance), memory, index);
  return (c) => runTasks(ctx, c);
});
