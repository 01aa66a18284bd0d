/**
 * Launcher of argmax_rows_f32 (kernels/argmax.cu): the greedy id of every row of a batched decode
 * step's logits in one launch and one copy of `rows` ids back, where the per-row argmax copied each
 * row out and waited for the device B times a step.
 */
import type { CuStream, DevicePtr, Driver } from './driver.js';
import { i32, ptr } from './kernelArgs.js';
import type { KernelModule } from './module.js';
import type { DeviceRows } from './batchOps.js';

const THREADS = 1024; // as argmax_f32: up to 32768 logits a row in one round of loads

/** What the launch needs of the backend (CudaBackend has these). */
export interface ArgmaxRowsContext {
  readonly cu: Driver;
  readonly kernels: KernelModule;
  readonly stream: CuStream;
}

/**
 * Ids of rows 0..rows-1 of `logits` ([rows ≥ rows, cols] f32), lowest id on ties. `out` is device
 * scratch for `rows` int32; the call waits for the stream (held work must have been flushed).
 */
export function launchArgmaxRows(ctx: ArgmaxRowsContext, logits: DeviceRows, rows: number, out: DevicePtr): Int32Array {
  if (!Number.isInteger(rows) || rows < 0 || rows > logits.rows) throw new RangeError(`argmaxRows: ${rows} rows of [${logits.rows}, ${logits.cols}]`);
  const ids = new Int32Array(rows);
  if (rows === 0) return ids; // a grid of 0 blocks is an invalid launch
  ctx.kernels.launch('argmax_rows_f32', { x: rows }, { x: THREADS }, [ptr(out), ptr(logits.ptr), i32(logits.cols)], 0, true);
  ctx.cu.copyDtoH(ids, out, rows * 4, ctx.stream);
  ctx.cu.streamSynchronize(ctx.stream);
  return ids;
}
