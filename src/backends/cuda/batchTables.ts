/**
 * The small device tables of the batched decode ops (batch_decode.cu): row t's position, and row t's
 * KV cache (BatchSeq: K and V base pointers, maxSeq). A decode step calls ropeRows, writeKvRows and
 * attentionRows with the same positions for every layer, so each table keeps the host copy of what it
 * last uploaded and copies again only when that changes: positions once per step, the cache table
 * when the batch's sequences change. Copies are stream-ordered, so kernels already queued keep
 * reading the old contents.
 */
import type { CuStream, DevicePtr, Driver, HostBuffer } from './driver.js';
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
  private readonly pos: DeviceTable<number, Int32Array>;
  private readonly seqs: DeviceTable<BatchKv, readonly BatchKv[]>;

  /** @param moved called when a table moves to a larger buffer (kernels recorded with the old one must not replay) */
  constructor(cu: Driver, mem: DeviceMemory, stream: CuStream, moved: () => void = () => undefined) {
    // the kept snapshot is itself the upload: a pageable source is staged when the copy call returns
    this.pos = new DeviceTable(cu, mem, stream, 4, (kept) => kept, moved);
    this.seqs = new DeviceTable(cu, mem, stream, BATCH_SEQ_BYTES, packSeqs, moved);
  }

  /** int32 [rows] on the device holding positions[0..rows). */
  positions(positions: Int32Array, rows: number): DevicePtr {
    return this.pos.get(positions, rows);
  }

  /** BatchSeq [rows] on the device for caches[0..rows). */
  caches(caches: readonly BatchKv[], rows: number): DevicePtr {
    return this.seqs.get(caches, rows);
  }
}

/** BatchSeq rows: k, v, maxSeq (pad left zero). */
function packSeqs(caches: readonly BatchKv[]): Buffer {
  const buf = Buffer.alloc(caches.length * BATCH_SEQ_BYTES);
  for (let t = 0; t < caches.length; t++) {
    const c = caches[t];
    buf.writeBigUInt64LE(c.k, t * BATCH_SEQ_BYTES);
    buf.writeBigUInt64LE(c.v, t * BATCH_SEQ_BYTES + 8);
    buf.writeInt32LE(c.maxSeq, t * BATCH_SEQ_BYTES + 16);
  }
  return buf;
}

/**
 * One device table of `entryBytes`-byte entries. It keeps a snapshot of the entries it last uploaded
 * (the caller may reuse its array) and copies again only when rows or an entry (compared with ===)
 * differ.
 */
class DeviceTable<T, A extends ArrayLike<T> & { slice(start: number, end: number): A }> {
  private dev: DevicePtr | null = null;
  /** entries the table holds */
  private cap = 0;
  private kept: A | null = null;

  constructor(private readonly cu: Driver, private readonly mem: DeviceMemory, private readonly stream: CuStream,
    private readonly entryBytes: number, private readonly pack: (kept: A) => HostBuffer, private readonly moved: () => void) {}

  get(entries: A, rows: number): DevicePtr {
    if (this.dev !== null && this.kept !== null && sameRows(this.kept, entries, rows)) return this.dev;
    const dev = this.cap >= rows && this.dev !== null ? this.dev : this.regrow(rows * this.entryBytes);
    this.kept = entries.slice(0, rows);
    const bytes = this.pack(this.kept);
    this.cu.copyHtoD(dev, bytes, bytes.byteLength, this.stream);
    return dev;
  }

  /** A larger table (at least twice the old one); the old one is freed once queued kernels are done with it. */
  private regrow(bytes: number): DevicePtr {
    const size = Math.max(bytes, 2 * this.cap * this.entryBytes, 256);
    if (this.dev !== null) {
      this.cu.streamSynchronize(this.stream);
      this.mem.free(this.dev);
      this.moved();
    }
    this.dev = this.mem.alloc(size);
    this.cap = Math.floor(size / this.entryBytes);
    return this.dev;
  }
}

/** kept holds exactly entries[0..rows) */
function sameRows<T>(kept: ArrayLike<T>, entries: ArrayLike<T>, rows: number): boolean {
  if (kept.length !== rows) return false;
  for (let t = 0; t < rows; t++) if (kept[t] !== entries[t]) return false;
  return true;
}
