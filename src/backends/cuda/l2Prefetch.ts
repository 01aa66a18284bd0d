/**
 * L2 prefetch of the next GEMV's weights (common.cuh: L2Prefetch, NextGemv). A one-token decode step
 * streams ~7 GB of int4 weights (13B) through kernels that each leave DRAM idle for a few
 * microseconds: at a GEMV's reduction tail and the next one's ramp, and during attention at short
 * context (latency, not bandwidth). A kernel that knows which weights come next asks L2 for them
 * meanwhile, so the next GEMV's first loads hit L2.
 * The backend learns what comes next without the model's help by holding each such launch back until
 * the next GEMV batch is complete (gemvBatch.ts); graphs capture the launches as issued, so a captured
 * step carries the same prefetches as an eager one.
 */
import type { DevicePtr } from './driver.js';

/** L2PF_RANGES in common.cuh */
export const L2PF_RANGES = 32;
/** sizeof(L2Prefetch) in common.cuh: ptr[32] u64, bytes[32] u32, total u64, count i32, pad */
export const L2PF_BYTES = 400;
/** sizeof(NextGemv) in common.cuh: inv, permOut, L2Prefetch */
export const NEXT_GEMV_BYTES = 16 + L2PF_BYTES;
/** byte offset of the L2Prefetch inside a NextGemv */
export const NEXT_GEMV_PF_AT = 16;

const MB = 1 << 20;

/**
 * Which kernels prefetch the next GEMV launch's weights into L2:
 *   latency: attention and one-row rmsnorm (latency-bound, DRAM idle): the next launch whole, up to latencyBytes
 *   tail:    every int4 GEMV, once its own weights are in: the first slice of every warp of the next launch, up to tailBytes
 */
export interface PrefetchOptions {
  readonly latency: boolean;
  readonly tail: boolean;
  readonly tailBytes: number;
  readonly latencyBytes: number;
}

export const PREFETCH_OFF: PrefetchOptions = { latency: false, tail: false, tailBytes: 0, latencyBytes: 0 };

/**
 * $QLLAMA_CUDA_PREFETCH: 0 off, 1 latency, 2 tail, 3 both (default 3 on sm_90+, where one
 * cp.async.bulk.prefetch.L2 per piece does it; 0 below). $QLLAMA_CUDA_PREFETCH_MB: the tail's budget
 * (default 8). The latency kernels' budget is half the card's L2 (the next launch must still be there
 * when it runs).
 */
export function prefetchFromEnv(computeMajor: number, l2Bytes: number, env: NodeJS.ProcessEnv = process.env): PrefetchOptions {
  const mask = env.QLLAMA_CUDA_PREFETCH !== undefined && env.QLLAMA_CUDA_PREFETCH !== '' ? Number(env.QLLAMA_CUDA_PREFETCH) : computeMajor >= 9 ? 3 : 0;
  const mb = Number(env.QLLAMA_CUDA_PREFETCH_MB ?? 8);
  if (!Number.isInteger(mask) || mask < 0 || mask > 3) throw new RangeError(`QLLAMA_CUDA_PREFETCH must be 0, 1, 2 or 3, got ${env.QLLAMA_CUDA_PREFETCH}`);
  if (!(mb >= 0)) throw new RangeError(`QLLAMA_CUDA_PREFETCH_MB must be a number of MiB >= 0, got ${env.QLLAMA_CUDA_PREFETCH_MB}`);
  return { latency: (mask & 1) !== 0, tail: (mask & 2) !== 0, tailBytes: Math.floor(mb * MB), latencyBytes: Math.floor(l2Bytes / 2) };
}

/** A contiguous piece of device memory. */
export interface ByteRange { readonly ptr: DevicePtr; readonly bytes: number }

/** One matrix of an int4 GEMV launch, as gemv_q4 reads it. */
export interface Q4Matrix {
  readonly qweight: DevicePtr; // [K/8, N] u32
  readonly scales: DevicePtr; // [G, N] fp16
  readonly qzeros: DevicePtr; // [G, N/8] u32
  readonly N: number;
}

/** What an int4 GEMV launch reads: its matrices over one K, split into K ranges of kPerBlock. */
export interface Q4Launch {
  readonly mats: readonly Q4Matrix[];
  readonly K: number;
  readonly groupSize: number;
  readonly kPerBlock: number;
}

/**
 * Sizes rounded up to the 16 bytes cp.async.bulk wants: a few bytes past an allocation's end stay in
 * its mapped page (allocations are at least 256-byte aligned, and a size that ends a page is already a
 * multiple of 16).
 */
const round16 = (n: number): number => Math.ceil(n / 16) * 16;

/**
 * The ranges of `next` to prefetch within `budget` bytes. whole: everything when it fits. Otherwise
 * scales and zeros (a few % of the bytes), then each K range's first 64 packed rows (the first slice of
 * each of the block's 4 warps, which every block loads before anything else), fewer rows per range when
 * the budget is short.
 */
export function q4PrefetchRanges(next: Q4Launch, budget: number, whole: boolean): ByteRange[] {
  const { K, kPerBlock } = next;
  const groups = Math.ceil(K / next.groupSize);
  const small: ByteRange[] = [];
  let total = 0;
  for (const m of next.mats) {
    small.push({ ptr: m.scales, bytes: round16(groups * m.N * 2) }, { ptr: m.qzeros, bytes: round16((groups * m.N) / 2) });
    total += groups * m.N * 2.5 + (K / 8) * m.N * 4;
  }
  if (whole && total <= budget) {
    return [...next.mats.map((m) => ({ ptr: m.qweight, bytes: (K / 8) * m.N * 4 })), ...small];
  }
  let left = budget - small.reduce((s, r) => s + r.bytes, 0);
  if (left <= 0) return [];
  const splits = Math.ceil(K / kPerBlock);
  const rowBytes = next.mats.reduce((s, m) => s + m.N * 4, 0);
  const rowsIn = (j: number): number => Math.min(64, (Math.min(K, (j + 1) * kPerBlock) - j * kPerBlock) / 8);
  let rows = 64;
  const cost = (r: number): number => Array.from({ length: splits }, (_, j) => Math.min(r, rowsIn(j))).reduce((s, n) => s + n, 0) * rowBytes;
  while (rows > 0 && cost(rows) > left) rows -= 8;
  if (rows === 0) return small;
  const out = [...small];
  for (const m of next.mats) {
    for (let j = 0; j < splits && out.length < L2PF_RANGES; j++) {
      const r = Math.min(rows, rowsIn(j));
      const bytes = r * m.N * 4;
      if (bytes > 0 && bytes <= left) {
        out.push({ ptr: (m.qweight + BigInt((j * kPerBlock) / 8) * BigInt(m.N * 4)) as DevicePtr, bytes });
        left -= bytes;
      }
    }
  }
  return out.slice(0, L2PF_RANGES);
}

/** Writes an L2Prefetch (common.cuh) of `ranges` at `at` (zeroed: nothing to prefetch). */
export function writeL2Prefetch(buf: Buffer, at: number, ranges: readonly ByteRange[]): void {
  buf.fill(0, at, at + L2PF_BYTES);
  const n = Math.min(ranges.length, L2PF_RANGES);
  let total = 0;
  for (let i = 0; i < n; i++) {
    buf.writeBigUInt64LE(ranges[i].ptr, at + i * 8);
    buf.writeUInt32LE(ranges[i].bytes, at + L2PF_RANGES * 8 + i * 4);
    total += ranges[i].bytes;
  }
  buf.writeBigUInt64LE(BigInt(total), at + L2PF_RANGES * 12);
  buf.writeInt32LE(n, at + L2PF_RANGES * 12 + 8);
}
