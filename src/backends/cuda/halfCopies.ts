/**
 * The fp16 copy of x that the tensor-core GEMMs of prompt rows read (linearLaunch.ts: gemm_q4_mma,
 * gemm_wgmma_256), kept in one scratch buffer and remembered, so that GEMMs over the same x skip the
 * conversion: q, k and v read one copy of the normed x, gate and up another (7 x_to_half passes per
 * layer became 4, 0.27 ms per 13B layer at 2048 rows on an H200, before the producers below).
 * Producers that know their output feeds such GEMMs (rmsnorm_rows_f32, swiglu_rows_f32) write the copy
 * themselves into the scratch (`reserve`), which removes those conversion passes too.
 *
 * What the scratch holds stays valid while its source is not written: the backend calls `forget` in
 * every op that writes an activation other than through a linear, and `wrote` with a linear's output.
 */
import type { DevicePtr } from './driver.js';
import { i32, ptr } from './kernelArgs.js';
import type { KernelModule } from './module.js';

/** the copy the scratch holds: source activation, rows, width, and the column gather applied (0n: none) */
interface Held {
  readonly src: DevicePtr;
  readonly rows: number;
  readonly cols: number;
  readonly perm: DevicePtr;
  readonly at: DevicePtr;
}

export class HalfCopies {
  private held: Held | null = null;

  /** @param scratch the fp16 buffer (grown to at least `bytes`; may move, which the key notices) */
  constructor(private readonly kernels: KernelModule, private readonly scratch: (bytes: number) => DevicePtr) {}

  /** xh[m, k] = half(x[m, perm ? perm[k] : k]) for rows × cols of x: converted unless already held. */
  of(x: DevicePtr, rows: number, cols: number, perm: DevicePtr | null): DevicePtr {
    const at = this.scratch(rows * cols * 2);
    const p = perm ?? (0n as DevicePtr);
    const h = this.held;
    if (h !== null && h.src === x && h.rows === rows && h.cols === cols && h.perm === p && h.at === at) return at;
    const pairs = (rows * cols) / 2;
    this.kernels.launch('x_to_half', { x: Math.min(Math.ceil(pairs / 256), 8192) }, { x: 256 }, [ptr(at), ptr(x), ptr(perm), i32(rows), i32(cols)]);
    this.held = { src: x, rows, cols, perm: p, at };
    return at;
  }

  /** The scratch for a producer that writes src's fp16 copy (no gather) in the launch it issues next. */
  reserve(src: DevicePtr, rows: number, cols: number): DevicePtr {
    const at = this.scratch(rows * cols * 2);
    this.held = { src, rows, cols, perm: 0n as DevicePtr, at };
    return at;
  }

  /** An activation may have changed: the copy held is no longer trusted. */
  forget(): void {
    this.held = null;
  }

  /** `y` was written (a linear's output): forget the copy if it is y's. */
  wrote(y: DevicePtr): void {
    if (this.held?.src === y) this.held = null;
  }
}
