/**
 * Launcher of sample_f32 (kernels/sample.cu): the host Sampler's temperature / top-k / top-p / min-p
 * draw over one logits row, on the device, one block of 1024 threads. It writes the id, or -1 where
 * the host has to sample from the logits (non-finite logits, more candidates than SAMPLE_CAPACITY).
 */
import type { DeviceSampling } from '../backend.js';
import type { DevicePtr } from './driver.js';
import { f32, i32, ptr } from './kernelArgs.js';
import type { KernelModule } from './module.js';

/** SAMPLE_CAP in sample.cu: the most candidates the kernel gathers and sorts in shared memory. */
export const SAMPLE_CAPACITY = 4096;
const THREADS = 1024; // SAMPLE_THREADS

/**
 * Queues the draw over `logits` ([cols] f32) into `out` (one int32). Returns false, launching
 * nothing, when the kernel would only answer -1 (top-k above SAMPLE_CAPACITY).
 */
export function launchSample(kernels: KernelModule, out: DevicePtr, logits: DevicePtr, cols: number, p: DeviceSampling): boolean {
  const topK = p.topK > 0 && p.topK < cols ? p.topK : 0;
  if (topK > SAMPLE_CAPACITY) return false;
  // The Sampler multiplies by the double 1 / T and rounds to f32; the kernel gets 1 / T as hi + lo.
  const inv = 1 / p.temperature;
  const hi = Math.fround(inv);
  const lo = Math.fround(inv - hi);
  kernels.launch('sample_f32', { x: 1 }, { x: THREADS },
    [ptr(out), ptr(logits), i32(cols), f32(hi), f32(lo), i32(topK), f64(p.topP), f64(p.minP), f64(p.u)], 0, true);
  return true;
}

function f64(v: number): Buffer {
  const b = Buffer.allocUnsafe(8);
  b.writeDoubleLE(v);
  return b;
}
