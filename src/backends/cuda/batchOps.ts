/**
 * The CUDA backend's batched decode ops (batch_decode.cu): row t of the operands is sequence t's next
 * token, with its own KV cache and position; one launch per op covers every row. Positions and cache
 * pointers reach the kernels through small device tables (batchTables.ts) refreshed from the host.
 * A captured batched step (CudaBackend.decodeStep) reads the tables where they were when it was
 * recorded: `prepare` writes each step's rows there before the replay (a table that has to move drops
 * the recorded steps), and attention is planned for the step's position bucket, not its longest row.
 */
import type { BatchAttentionShape, RopeShape } from '../backend.js';
import { planAttention } from './attentionLaunch.js';
import { checkCaches, checkRows } from './batchChecks.js';
import { BatchTables, type BatchKv } from './batchTables.js';
import type { CuStream, DevicePtr, Driver } from './driver.js';
import { CudaUnsupportedError } from './errors.js';
import { f32, i32, ptr } from './kernelArgs.js';
import type { DeviceMemory } from './memory.js';
import type { KernelModule } from './module.js';

/** An activation in device memory: [rows, cols] f32 at ptr. */
export interface DeviceRows {
  readonly rows: number;
  readonly cols: number;
  readonly ptr: DevicePtr;
}

/** What the ops need of the backend (CudaBackend builds it). */
export interface BatchOpsHost {
  readonly cu: Driver;
  readonly mem: DeviceMemory;
  readonly stream: CuStream;
  readonly kernels: KernelModule;
  readonly smCount: number;
  /** whether runGraph / decodeStep is recording */
  capturing(): boolean;
  /** while recording: the positions the recorded step serves (its bucket) */
  captureBound(): number;
  /** a table moved: steps recorded with the old one must go */
  tablesMoved(): void;
  /** sends held one-row work (gemvBatch.ts) out */
  flush(): void;
  /** the split attention's scratch, shared with the one-row attention: partial results and zeroed tickets, at least these sizes */
  attnScratch(partBytes: number, ticketBytes: number): { readonly part: DevicePtr; readonly tickets: DevicePtr };
}

export class BatchOps {
  /** device tables of positions and cache pointers, made on first use */
  private batchTables: BatchTables | null = null;

  constructor(private readonly host: BatchOpsHost) {}

  /** Rotary embedding of row t of x ([rows, ≥ heads·headDim]) at positions[t]. */
  ropeRows(x: DeviceRows, heads: number, headDim: number, positions: Int32Array, theta: number, rows: number): void {
    this.begin();
    if (headDim % 2 !== 0) throw new RangeError(`ropeRows: head size ${headDim} is odd`);
    checkRows('ropeRows', rows, positions, x, heads * headDim);
    const pos = this.tables().positions(positions, rows);
    this.host.kernels.launch('rope_rows_f32', { x: Math.ceil((heads * headDim) / 2 / 256), y: rows }, { x: 256 },
      [ptr(x.ptr), i32(x.cols), i32(heads), i32(headDim), f32(theta), ptr(pos)], 0, true);
  }

  /** Row t of k and v ([rows, kvHeads·headDim]) into caches[t] at layer `layer`, position positions[t]. */
  writeKvRows(kvs: readonly BatchKv[], layer: number, positions: Int32Array, k: DeviceRows, v: DeviceRows, rows: number): void {
    this.begin();
    if (kvs.length < Math.max(rows, 1)) throw new RangeError(`writeKvRows: ${kvs.length} KV caches for ${rows} rows`);
    const width = kvs[0].kvHeads * kvs[0].headDim;
    checkRows('writeKvRows', rows, positions, k, width);
    checkRows('writeKvRows', rows, positions, v, width);
    if (k.cols !== width || v.cols !== width) throw new RangeError(`writeKvRows: k and v rows of ${k.cols} and ${v.cols} values, the caches' ${width}`);
    checkCaches('writeKvRows', kvs, layer, positions, rows, kvs[0].kvHeads, kvs[0].headDim);
    const t = this.tables();
    const pos = t.positions(positions, rows), seqs = t.caches(kvs, rows);
    this.host.kernels.launch('kv_write_rows', { x: Math.ceil(width / 256), y: rows }, { x: 256 },
      [ptr(seqs), ptr(pos), i32(layer), ptr(k.ptr), ptr(v.ptr), i32(width)], 0, true);
  }

  /**
   * ropeRows of q and of k, then writeKvRows of k and v, in one launch (rope_kv_rows): the same checks, the same
   * rounding. H200, 13B batched decode: bench/cudaNotes.md, sixteenth pass.
   */
  ropeKvRows(q: DeviceRows, k: DeviceRows, v: DeviceRows, kvs: readonly BatchKv[], layer: number, positions: Int32Array,
    shape: RopeShape, rows: number): void {
    const { heads, kvHeads, headDim, theta } = shape;
    this.begin();
    if (headDim % 2 !== 0) throw new RangeError(`ropeKvRows: head size ${headDim} is odd`);
    if (kvs.length < Math.max(rows, 1)) throw new RangeError(`ropeKvRows: ${kvs.length} KV caches for ${rows} rows`);
    if (kvs[0].kvHeads !== kvHeads || kvs[0].headDim !== headDim) throw new RangeError(`ropeKvRows: caches of ${kvs[0].kvHeads} x ${kvs[0].headDim}, not ${kvHeads} x ${headDim}`);
    if (heads < kvHeads) throw new RangeError(`ropeKvRows: ${heads} query heads for ${kvHeads} KV heads`);
    const width = kvHeads * headDim;
    checkRows('ropeKvRows', rows, positions, q, heads * headDim);
    checkRows('ropeKvRows', rows, positions, k, width);
    checkRows('ropeKvRows', rows, positions, v, width);
    if (k.cols !== width || v.cols !== width) throw new RangeError(`ropeKvRows: k and v rows of ${k.cols} and ${v.cols} values, the caches' ${width}`);
    checkCaches('ropeKvRows', kvs, layer, positions, rows, kvHeads, headDim);
    const t = this.tables();
    const pos = t.positions(positions, rows), seqs = t.caches(kvs, rows);
    this.host.kernels.launch('rope_kv_rows', { x: Math.ceil((heads * headDim) / 2 / 256), y: rows }, { x: 256 },
      [ptr(q.ptr), i32(q.cols), i32(heads), ptr(k.ptr), ptr(v.ptr), i32(kvHeads), i32(headDim), f32(theta), ptr(pos), ptr(seqs), i32(layer)], 0, true);
  }

  /** Decode attention of row t of q ([rows, heads·headDim]) over positions 0..positions[t] of caches[t], into out. */
  attentionRows(out: DeviceRows, q: DeviceRows, kvs: readonly BatchKv[], shape: BatchAttentionShape, positions: Int32Array, rows: number): void {
    const { heads, kvHeads, headDim: d } = shape;
    if (d !== 64 && d !== 128 && d !== 256) throw new CudaUnsupportedError(`the CUDA attention kernel supports head sizes 64, 128 and 256, not ${d}`);
    if (heads % kvHeads !== 0) throw new CudaUnsupportedError(`attentionRows: ${heads} query heads do not share ${kvHeads} KV heads evenly`);
    this.begin();
    checkRows('attentionRows', rows, positions, q, heads * d);
    checkRows('attentionRows', rows, positions, out, heads * d);
    if (q.cols !== heads * d || out.cols !== heads * d) throw new RangeError(`attentionRows: q and out rows of ${q.cols} and ${out.cols} values, not ${heads * d}`);
    const maxPos = checkCaches('attentionRows', kvs, shape.layer, positions, rows, kvHeads, d);
    // splits planned for the longest row (a recorded step: for its bucket, within the caches); the blocks a
    // shorter row does not need exit at once
    const longest = this.host.capturing() ? Math.max(maxPos + 1, Math.min(this.host.captureBound(), maxSeqOf(kvs, rows))) : maxPos + 1;
    const plan = planAttention(longest, rows, heads, this.host.smCount, d);
    const { part, tickets } = this.host.attnScratch(rows * heads * plan.splits * (d + 2) * 4, rows * heads * 4);
    const t = this.tables();
    const pos = t.positions(positions, rows), seqs = t.caches(kvs, rows);
    this.host.kernels.launch(`attn_rows_${d}`, { x: heads, y: plan.splits, z: rows }, { x: 128 },
      [ptr(out.ptr), ptr(part), ptr(tickets), ptr(q.ptr), ptr(seqs), ptr(pos), i32(shape.layer), i32(heads), i32(kvHeads),
        i32(plan.splits), f32(1 / Math.sqrt(d))], 0, true);
  }

  /**
   * Writes a step's positions and cache pointers into the device tables before it is recorded or
   * replayed (outside the recording: the copies are not part of the graph). Checks every row's position
   * against its cache, which a replay does not do. Returns the largest position.
   */
  prepare(kvs: readonly BatchKv[], positions: Int32Array, rows: number): number {
    if (this.host.capturing()) throw new Error('BatchOps.prepare: called while recording');
    if (kvs.length < rows || positions.length < rows) throw new RangeError(`a batched step of ${rows} rows with ${kvs.length} caches and ${positions.length} positions`);
    for (let t = 0; t < rows; t++) if (!Number.isInteger(positions[t]) || positions[t] < 0) throw new RangeError(`decodeStep: row ${t} has position ${positions[t]}`);
    const maxPos = checkCaches('decodeStep', kvs, 0, positions, rows, kvs[0].kvHeads, kvs[0].headDim);
    const t = this.tables();
    t.positions(positions, rows);
    t.caches(kvs, rows);
    return maxPos;
  }

  /** Held one-row work goes out first. */
  private begin(): void {
    this.host.flush();
  }

  private tables(): BatchTables {
    this.batchTables ??= new BatchTables(this.host.cu, this.host.mem, this.host.stream, () => this.host.tablesMoved());
    return this.batchTables;
  }
}

/** The largest maxSeq among the first `rows` caches. */
function maxSeqOf(kvs: readonly BatchKv[], rows: number): number {
  let m = 0;
  for (let t = 0; t < rows; t++) m = Math.max(m, kvs[t].maxSeq);
  return m;
}
