/**
 * The small device tables of the batched decode ops (batch_decode.cu): row t's position, and row t's
 * KV cache (BatchSeq: K and V base pointers, maxSeq). A decode step calls ropeRows, writeKvRows and
 * attentionRows with the same positions for every layer, so each table keeps the host copy of what it
 * last uploaded and copies again only when that changes: positions once per step, the cache table
 * when the batch's sequences change. Copies are stream-ordered, so kernels already queued keep
 * reading the old contents.
 */
import type { CuStream, DevicePtr, Driver } from './driver.js';
import type { DeviceMemory } from './memory.js';

/** What the tables need of a CUDA KV cache: [layers, maxSeq, kvHeads·headDim] fp16 for K and for V. */
export interface BatchKv {
  readonly layers: number;
  readonly maxSeq: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly k: DevicePtr;
  readonly v: DevicePtr;
}

/** sizeof(BatchSeq) in batch_decode.cu: k (u64), v (u64), maxSeq (i32), pad (i32) */
export const BATCH_SEQ_BYTES = 24;

export class BatchTables {
  private posDev: DevicePtr | null = null;
  private posCap = 0;
  private posHost = new Int32Array(0);
  private seqDev: DevicePtr | null = null;
  private seqCap = 0;
  private seqHost: readonly BatchKv[] = [];

  constructor(private readonly cu: Driver, private readonly mem: DeviceMemory, private readonly stream: CuStream) {}

  /** int32 [rows] on the device holding positions[0..rows). */
  positions(positions: Int32Array, rows: number): DevicePtr {
    const host = this.posHost;
    let same = this.posDev !== null && host.length === rows;
    for (let t = 0; same && t < rows; t++) same = host[t] === positions[t];
    if (same && this.posDev !== null) return this.posDev;
    const dev = this.posCap >= rows && this.posDev !== null ? this.posDev : this.regrow('pos', rows * 4);
    this.posHost = positions.slice(0, rows);
    // pageable source: staged when the call returns, so the host copy may change afterwards
    this.cu.copyHtoD(dev, this.posHost, rows * 4, this.stream);
    return dev;
  }

  /** BatchSeq [rows] on the device for caches[0..rows). */
  caches(caches: readonly BatchKv[], rows: number): DevicePtr {
    const host = this.seqHost;
    let same = this.seqDev !== null && host.length === rows;
    for (let t = 0; same && t < rows; t++) same = host[t] === caches[t];
    if (same && this.seqDev !== null) return this.seqDev;
    const dev = this.seqCap >= rows && this.seqDev !== null ? this.seqDev : this.regrow('seq', rows * BATCH_SEQ_BYTES);
    const buf = Buffer.alloc(rows * BATCH_SEQ_BYTES);
    for (let t = 0; t < rows; t++) {
      const c = caches[t];
      buf.writeBigUInt64LE(c.k, t * BATCH_SEQ_BYTES);
      buf.writeBigUInt64LE(c.v, t * BATCH_SEQ_BYTES + 8);
      buf.writeInt32LE(c.maxSeq, t * BATCH_SEQ_BYTES + 16);
    }
    this.seqHost = caches.slice(0, rows);
    this.cu.copyHtoD(dev, buf, buf.byteLength, this.stream);
    return dev;
  }

  /** A larger table (at least twice the old one); the old one is freed once queued kernels are done with it. */
  private regrow(which: 'pos' | 'seq', bytes: number): DevicePtr {
    const old = which === 'pos' ? this.posDev : this.seqDev;
    const cap = which === 'pos' ? this.posCap * 4 : this.seqCap * BATCH_SEQ_BYTES;
    const size = Math.max(bytes, 2 * cap, 256);
    if (old !== null) {
      this.cu.streamSynchronize(this.stream);
      this.mem.free(old);
    }
    const dev = this.mem.alloc(size);
    if (which === 'pos') {
      this.posDev = dev;
      this.posCap = Math.floor(size / 4);
    } else {
      this.seqDev = dev;
      this.seqCap = Math.floor(size / BATCH_SEQ_BYTES);
    }
    return dev;
  }
}
