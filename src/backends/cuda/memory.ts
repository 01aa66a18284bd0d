/**
 * Device allocations of one backend: tracks what is live (so dispose frees everything) and the
 * peak, which benchmarks report.
 */
import type { DevicePtr, Driver } from './driver.js';

export class DeviceMemory {
  private readonly live = new Map<DevicePtr, number>();
  private bytes = 0;
  private peakBytes = 0;

  constructor(private readonly cu: Driver) {}

  alloc(bytes: number): DevicePtr {
    const p = this.cu.memAlloc(bytes);
    this.live.set(p, bytes);
    this.bytes += bytes;
    this.peakBytes = Math.max(this.peakBytes, this.bytes);
    return p;
  }

  free(p: DevicePtr): void {
    const n = this.live.get(p);
    if (n === undefined) return;
    this.cu.memFree(p);
    this.live.delete(p);
    this.bytes -= n;
  }

  get allocated(): number { return this.bytes; }
  get peak(): number { return this.peakBytes; }

  freeAll(): void {
    for (const p of [...this.live.keys()]) this.free(p);
  }
}
