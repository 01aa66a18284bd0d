/** A compute thread of the fast CPU backend: sleeps in Atomics.wait until the main thread posts a job. */
import { execute, NT } from './jobs.js';
import { kernelExports } from './kernels.js';
import { serveJobs } from './pool.js';

serveJobs((instance, _memory, index) => {
  const k = kernelExports(instance);
  return (c) => {
    const nt = c[NT];
    if (index < nt) execute(k, c, index, nt);
  };
});
