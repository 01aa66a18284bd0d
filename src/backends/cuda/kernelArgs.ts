/**
 * Kernel arguments as the driver wants them: one buffer per parameter holding its bytes
 * (cuLaunchKernel's `kernelParams`). Typed builders keep launches free of untyped values.
 */
import type { DevicePtr } from './driver.js';

/** A device pointer argument; `null` passes a null pointer (e.g. "no permutation"). */
export function ptr(p: DevicePtr | null): Buffer {
  const b = Buffer.allocUnsafe(8);
  b.writeBigUInt64LE(p ?? 0n);
  return b;
}

export function i32(v: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeInt32LE(v | 0);
  return b;
}

export function u32(v: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32LE(v >>> 0);
  return b;
}

export function f32(v: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeFloatLE(v);
  return b;
}

export function u64(v: number | bigint): Buffer {
  const b = Buffer.allocUnsafe(8);
  b.writeBigUInt64LE(BigInt(v));
  return b;
}
