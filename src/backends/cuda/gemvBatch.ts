/**
 * One-token int4 GEMVs, batched: consecutive `linear` calls that read the same x (q/k/v, gate/up)
 * wait here and go out as one launch of `gemv_q4_rpg*` over all their matrices. Ops the model issues
 * right after them fold into that launch's epilogue instead of running as kernels of their own:
 *   rope(q), rope(k)                  → rotary embedding on the finished tile (head size 128)
 *   writeKv(k, v)                     → fp16 KV-cache store of the finished k and v tiles
 *   swiglu(hidden, gate, up)          → silu(gate)·up written beside gate and up
 * The backend flushes the batch before any other op, so the observable order of effects is the
 * model's. Split-K partial sums go through a workspace that the kernel leaves zeroed, so no memsets.
 */
import type { DevicePtr } from './driver.js';
import type { CudaGptq } from './linearUpload.js';
import type { KernelModule } from './module.js';

/** tiles of 128 outputs one launch may hold (workspace: 128 f32 each; counters: one u32 each) */
export const MAX_TILES = 8192;
const MAX_MATS = 3;
const MAT_BYTES = 64;
const ARGS_BYTES = 256;
/** packed rows of x one block stages in shared memory (XS_ROWS in gemv_q4.cu): 64 slices of 128 */
const MAX_SLICES_PER_BLOCK = 64;
/** blocks per SM the grid aims at (the kernel's __launch_bounds__(128, 4)) */
const BLOCKS_PER_SM = 4;

interface Pending {
  readonly y: DevicePtr;
  readonly w: CudaGptq;
  readonly accumulate: boolean;
  ropeTheta: number; // 0: none
  cache: DevicePtr | null;
}

interface PosRef { readonly ptr: DevicePtr | null; readonly imm: number }

export class GemvBatch {
  private readonly pending: Pending[] = [];
  private x: DevicePtr | null = null;
  private pos: PosRef | null = null;
  private maxSeq = 0;

  constructor(private readonly kernels: KernelModule, private readonly ws: DevicePtr, private readonly counters: DevicePtr,
    private readonly smCount: number) {}

  /**
   * K values per block: about one wave of BLOCKS_PER_SM blocks per SM over all tiles, each block's
   * range a multiple of 4 slices (one per warp) where K allows, at most MAX_SLICES_PER_BLOCK slices.
   */
  static kPerBlock(K: number, tiles: number, smCount: number): number {
    const slices = Math.ceil(K / 128);
    const splits = Math.max(1, Math.floor((smCount * BLOCKS_PER_SM) / tiles));
    let per = Math.ceil(Math.ceil(slices / splits) / 4) * 4;
    per = Math.max(Math.min(per, MAX_SLICES_PER_BLOCK), Math.ceil(slices / MAX_SLICES_PER_BLOCK));
    return per * 128;
  }

  /** Whether the fused kernel serves this weight for one row. */
  static fits(w: CudaGptq): boolean {
    return w.layout === 'q4' && Math.ceil(w.outFeatures / 128) <= MAX_TILES;
  }

  /** Queues y (+)= x Wᵀ; flushes first when it cannot join the waiting batch. */
  add(y: DevicePtr, x: DevicePtr, w: CudaGptq, accumulate: boolean): void {
    const p = this.pending;
    if (p.length > 0) {
      const w0 = p[0].w;
      const tiles = p.reduce((s, q) => s + Math.ceil(q.w.outFeatures / 128), 0) + Math.ceil(w.outFeatures / 128);
      const joins = w.bias === null && w0.bias === null && this.x === x && y !== x && p.length < MAX_MATS && tiles <= MAX_TILES && w.inFeatures === w0.inFeatures &&
        w.groupSize === w0.groupSize && w.rowsPerGroup === w0.rowsPerGroup && p.every((q) => q.y !== y) &&
        p.every((q) => q.ropeTheta === 0 && q.cache === null);
      if (!joins) this.flush();
    }
    this.x = x;
    this.pending.push({ y, w, accumulate, ropeTheta: 0, cache: null });
  }

  /** Folds rope of a waiting output into its epilogue; false when it cannot (caller runs rope_f32). */
  addRope(y: DevicePtr, heads: number, headDim: number, theta: number, pos: PosRef): boolean {
    const e = this.pending.find((q) => q.y === y);
    if (!e || e.w.bias !== null || headDim !== 128 || e.accumulate || e.ropeTheta !== 0 || e.cache !== null || e.w.outFeatures !== heads * headDim || !this.samePos(pos)) return false;
    e.ropeTheta = theta;
    this.pos = pos;
    return true;
  }

  /** Folds the KV-cache write of two waiting outputs into their epilogues; false when it cannot. */
  addKvWrite(k: DevicePtr, v: DevicePtr, kc: DevicePtr, vc: DevicePtr, maxSeq: number, pos: PosRef): boolean {
    const ek = this.pending.find((q) => q.y === k), ev = this.pending.find((q) => q.y === v);
    if (!ek || !ev || ek === ev || ek.w.bias !== null || ev.w.bias !== null || ek.cache !== null || ev.cache !== null || ek.accumulate || ev.accumulate || !this.samePos(pos)) return false;
    if (ek.w.outFeatures !== ev.w.outFeatures) return false;
    ek.cache = kc;
    ev.cache = vc;
    this.maxSeq = maxSeq;
    this.pos = pos;
    return true;
  }

  /** Runs the waiting gate/up pair with SwiGLU in the epilogue; false when the batch is not that pair. */
  swiglu(out: DevicePtr, gate: DevicePtr, up: DevicePtr): boolean {
    const p = this.pending;
    if (p.length !== 2 || p[0].y !== gate || p[1].y !== up || out === gate || out === up) return false;
    if (p.some((q) => q.w.bias !== null || q.accumulate || q.ropeTheta !== 0 || q.cache !== null) || p[0].w.outFeatures !== p[1].w.outFeatures) return false;
    this.launch(out);
    return true;
  }

  flush(): void {
    if (this.pending.length > 0) this.launch(null);
  }

  private samePos(pos: PosRef): boolean {
    return this.pos === null || (this.pos.ptr === pos.ptr && this.pos.imm === pos.imm);
  }

  private launch(swiglu: DevicePtr | null): void {
    const p = this.pending;
    const a = Buffer.alloc(ARGS_BYTES);
    let tiles = 0;
    for (let i = 0; i < MAX_MATS; i++) {
      const e = p[Math.min(i, p.length - 1)];
      const o = i * MAT_BYTES;
      if (i < p.length) {
        tiles += Math.ceil(e.w.outFeatures / 128);
        a.writeBigUInt64LE(e.w.qweight, o);
        a.writeBigUInt64LE(e.w.scales, o + 8);
        a.writeBigUInt64LE(e.w.qzeros, o + 16);
        a.writeBigUInt64LE(e.w.perm ?? 0n, o + 24);
        a.writeBigUInt64LE(e.y, o + 32);
        a.writeBigUInt64LE(e.cache ?? 0n, o + 40);
        a.writeInt32LE(e.w.outFeatures, o + 48);
        a.writeInt32LE((e.accumulate ? 1 : 0) | (e.ropeTheta !== 0 ? 2 : 0), o + 56);
        a.writeFloatLE(e.ropeTheta, o + 60);
      }
      a.writeInt32LE(tiles, o + 52); // unused slots end where the last used one ends
    }
    const w0 = p[0].w;
    a.writeBigUInt64LE(this.ws, 192);
    a.writeBigUInt64LE(this.counters, 200);
    a.writeBigUInt64LE(swiglu ?? 0n, 208);
    a.writeBigUInt64LE(this.x!, 216);
    a.writeBigUInt64LE(this.pos?.ptr ?? 0n, 224);
    a.writeInt32LE(this.pos?.imm ?? 0, 232);
    a.writeInt32LE(p.length, 236);
    a.writeInt32LE(w0.inFeatures, 240);
    a.writeInt32LE(w0.groupSize, 244);
    a.writeInt32LE(this.maxSeq, 248);
    const kPer = GemvBatch.kPerBlock(w0.inFeatures, tiles, this.smCount);
    a.writeInt32LE(kPer, 252);
    this.kernels.launch(`gemv_q4_rpg${w0.rowsPerGroup}`, { x: tiles, y: Math.ceil(w0.inFeatures / kPer) }, { x: 128 }, [a], 0, true);
    p.length = 0;
    this.x = null;
    this.pos = null;
    this.maxSeq = 0;
  }
}
