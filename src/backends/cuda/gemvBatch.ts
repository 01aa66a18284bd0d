/**
 * One-token int4 GEMVs, batched: consecutive `linear` calls that read the same x (q/k/v, gate/up)
 * wait here and go out as one launch of `gemv_q4_rpg*` over all their matrices. Ops the model issues
 * right after them fold into that launch's epilogue instead of running as kernels of their own:
 *   rope(q), rope(k)                  → rotary embedding on the finished tile (head size 128)
 *   writeKv(k, v)                     → fp16 KV-cache store of the finished k and v tiles
 *   swiglu(hidden, gate, up)          → silu(gate)·up written beside gate and up
 *   rmsNorm(xb, x) after x += W·h     → the launch's last block normalizes the finished x (normEpilogue)
 * The backend flushes the batch before any other op, so the observable order of effects is the
 * model's. Split-K partial sums go through a workspace that the kernel leaves zeroed, so no memsets.
 */
import type { DevicePtr } from './driver.js';
import { f32, i32, ptr } from './kernelArgs.js';
import type { CudaGptq } from './linearUpload.js';
import type { KernelModule } from './module.js';

/** tiles of 128 outputs one launch may hold (workspace: 128 f32 each; counters: one u32 each) */
export const MAX_TILES = 8192;
const MAX_MATS = 3;
const MAT_BYTES = 64;
const ARGS_BYTES = 304;
/** permuted-x buffers: 3 for an rmsnorm's consumers, 1 for a SwiGLU epilogue's */
export const PERM_BUFFERS = 4;
/** largest K whose x producers can write a permuted copy (f32 buffers allocated once) */
export const MAX_PERM_K = 32768;
/** packed rows of x one block stages in shared memory (XS_ROWS in gemv_q4.cu): 64 slices of 128 */
const MAX_SLICES_PER_BLOCK = 64;
/**
 * blocks per SM the grid aims at: one wave (`__launch_bounds__(128, 4)`); more, shorter blocks and 3 or 2
 * (a slot left for the next kernel's prefetch) measured slower (bench/cudaNotes.md, sixth pass)
 */
const BLOCKS_PER_SM = 4;

/**
 * QLLAMA_CUDA_PERMX=1: rmsnorm and the SwiGLU epilogue also write their output in the act-order
 * consumer's row order. Off by default: with the one-block rmsnorm_perm_f32 it measured slower
 * (act-order decode 218 vs 231 tok/s on the H100).
 */
export function permuteXDefault(): boolean {
  return process.env.QLLAMA_CUDA_PERMX === '1';
}

interface Pending {
  readonly y: DevicePtr;
  readonly w: CudaGptq;
  readonly accumulate: boolean;
  ropeTheta: number; // 0: none
  cache: DevicePtr | null;
  /** x already gathered into this weight's row order (act-order), read linearly; else null */
  xPerm: DevicePtr | null;
}

/** A one-row RMSNorm held back until its consumers are known, so it can write their permuted inputs. */
interface PendingNorm {
  readonly out: DevicePtr;
  readonly x: DevicePtr;
  readonly w: DevicePtr;
  readonly eps: number;
  readonly dim: number;
  readonly perms: DevicePtr[];
}

interface PosRef { readonly ptr: DevicePtr | null; readonly imm: number }

export class GemvBatch {
  private readonly pending: Pending[] = [];
  private x: DevicePtr | null = null;
  private pos: PosRef | null = null;
  private maxSeq = 0;
  /** producers write act-order consumers' inputs already permuted (see permuteXDefault) */
  permuteX = permuteXDefault();

  private norm: PendingNorm | null = null;
  /** SwiGLU output of the waiting gate/up pair (launched when its consumer is known); else null */
  private swigluOut: DevicePtr | null = null;

  /** @param permBufs PERM_BUFFERS f32 buffers of MAX_PERM_K values each */
  constructor(private readonly kernels: KernelModule, private readonly ws: DevicePtr, private readonly counters: DevicePtr,
    private readonly smCount: number, private readonly permBufs: readonly DevicePtr[]) {}

  /**
   * out = rmsnorm(x)·w of one row as the epilogue of the waiting residual-add GEMV that produces x
   * (o_proj and down_proj before the next norm), launched now; false when no such GEMV waits (the
   * caller runs the norm itself). Saves one kernel and its launch gap per norm.
   */
  normEpilogue(out: DevicePtr, x: DevicePtr, w: DevicePtr, eps: number, dim: number): boolean {
    const p = this.pending;
    if (this.permuteX || this.norm !== null || this.swigluOut !== null || p.length !== 1) return false;
    const e = p[0];
    if (e.y !== x || !e.accumulate || e.ropeTheta !== 0 || e.cache !== null || e.w.bias !== null || e.w.outFeatures !== dim || dim % 4 !== 0) return false;
    this.launch(null, null, { out, w, eps });
    return true;
  }

  /** Holds back out = rmsnorm(x)·w of one row (launched before the next GEMV batch or op). */
  addNorm(out: DevicePtr, x: DevicePtr, w: DevicePtr, eps: number, dim: number): void {
    this.flush();
    this.norm = { out, x, w, eps, dim, perms: [] };
  }

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
    let xPerm: DevicePtr | null = null;
    if (this.swigluOut !== null) {
      // the gate/up pair goes out now; when this GEMV reads its SwiGLU output, also in its row order
      const permuted = x === this.swigluOut && w.invPerm !== null && w.inFeatures <= MAX_PERM_K;
      this.launch(this.swigluOut, permuted ? w.invPerm : null);
      if (permuted) xPerm = this.permBufs[PERM_BUFFERS - 1];
    }
    if (this.norm !== null && this.norm.out !== x) this.flush();
    const p = this.pending;
    if (p.length > 0) {
      const w0 = p[0].w;
      const tiles = p.reduce((s, q) => s + Math.ceil(q.w.outFeatures / 128), 0) + Math.ceil(w.outFeatures / 128);
      const joins = w.bias === null && w0.bias === null && this.x === x && y !== x && p.length < MAX_MATS && tiles <= MAX_TILES && w.inFeatures === w0.inFeatures &&
        w.groupSize === w0.groupSize && w.rowsPerGroup === w0.rowsPerGroup && p.every((q) => q.y !== y) &&
        p.every((q) => q.ropeTheta === 0 && q.cache === null);
      if (!joins) this.flush();
    }
    const n = this.norm;
    if (n !== null && n.out === x && w.perm !== null && n.dim === w.inFeatures && n.dim <= MAX_PERM_K && n.perms.length < PERM_BUFFERS - 1) {
      xPerm = this.permBufs[n.perms.length];
      n.perms.push(w.perm);
    }
    this.x = x;
    this.pending.push({ y, w, accumulate, ropeTheta: 0, cache: null, xPerm });
  }

  /** Folds rope of a waiting output into its epilogue; false when it cannot (caller runs rope_f32). */
  addRope(y: DevicePtr, heads: number, headDim: number, theta: number, pos: PosRef): boolean {
    const e = this.pending.find((q) => q.y === y);
    if (!e || this.swigluOut !== null || e.w.bias !== null || headDim !== 128 || e.accumulate || e.ropeTheta !== 0 || e.cache !== null || e.w.outFeatures !== heads * headDim || !this.samePos(pos)) return false;
    e.ropeTheta = theta;
    this.pos = pos;
    return true;
  }

  /** Folds the KV-cache write of two waiting outputs into their epilogues; false when it cannot. */
  addKvWrite(k: DevicePtr, v: DevicePtr, kc: DevicePtr, vc: DevicePtr, maxSeq: number, pos: PosRef): boolean {
    const ek = this.pending.find((q) => q.y === k), ev = this.pending.find((q) => q.y === v);
    if (!ek || !ev || ek === ev || this.swigluOut !== null || ek.w.bias !== null || ev.w.bias !== null || ek.cache !== null || ev.cache !== null || ek.accumulate || ev.accumulate || !this.samePos(pos)) return false;
    if (ek.w.outFeatures !== ev.w.outFeatures) return false;
    ek.cache = kc;
    ev.cache = vc;
    this.maxSeq = maxSeq;
    this.pos = pos;
    return true;
  }

  /**
   * Folds SwiGLU into the waiting gate/up pair's epilogue; false when the batch is not that pair. The
   * launch waits for the next op: a GEMV that reads `out` gets it also in its own row order (act-order).
   */
  swiglu(out: DevicePtr, gate: DevicePtr, up: DevicePtr): boolean {
    const p = this.pending;
    if (p.length !== 2 || this.swigluOut !== null || p[0].y !== gate || p[1].y !== up || out === gate || out === up) return false;
    if (p.some((q) => q.w.bias !== null || q.accumulate || q.ropeTheta !== 0 || q.cache !== null) || p[0].w.outFeatures !== p[1].w.outFeatures) return false;
    if (this.permuteX) this.swigluOut = out;
    else this.launch(out, null);
    return true;
  }

  flush(): void {
    if (this.pending.length > 0) this.launch(this.swigluOut, null);
    else this.launchNorm();
  }

  private launchNorm(): void {
    const n = this.norm;
    if (n === null) return;
    this.norm = null;
    const args = [ptr(n.out), ptr(n.x), ptr(n.w), f32(n.eps), i32(n.dim)];
    if (n.perms.length === 0) {
      this.kernels.launch('rmsnorm_f32', { x: 1 }, { x: 1024 }, args, 0, true);
      return;
    }
    const np = Buffer.alloc(56); // NormPerm: perm[3], out[3], count
    n.perms.forEach((q, k) => {
      np.writeBigUInt64LE(q, k * 8);
      np.writeBigUInt64LE(this.permBufs[k], 24 + k * 8);
    });
    np.writeInt32LE(n.perms.length, 48);
    this.kernels.launch('rmsnorm_perm_f32', { x: 1 }, { x: 1024 }, [...args, np], 0, true);
  }

  private samePos(pos: PosRef): boolean {
    return this.pos === null || (this.pos.ptr === pos.ptr && this.pos.imm === pos.imm);
  }

  /** @param norm RMSNorm of the finished y for the launch's last block to write (normEpilogue) */
  private launch(swiglu: DevicePtr | null, swigluInv: DevicePtr | null, norm?: { readonly out: DevicePtr; readonly w: DevicePtr; readonly eps: number }): void {
    this.launchNorm();
    this.swigluOut = null;
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
        a.writeBigUInt64LE(e.xPerm ?? e.w.perm ?? 0n, o + 24);
        a.writeBigUInt64LE(e.y, o + 32);
        a.writeBigUInt64LE(e.cache ?? 0n, o + 40);
        a.writeInt32LE(e.w.outFeatures, o + 48);
        a.writeInt32LE((e.accumulate ? 1 : 0) | (e.ropeTheta !== 0 ? 2 : 0) | (e.xPerm !== null ? 4 : 0), o + 56);
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
    a.writeBigUInt64LE(swigluInv ?? 0n, 256);
    a.writeBigUInt64LE(swigluInv !== null ? this.permBufs[PERM_BUFFERS - 1] : 0n, 264);
    if (norm) {
      a.writeBigUInt64LE(norm.w, 272);
      a.writeBigUInt64LE(norm.out, 280);
      a.writeBigUInt64LE(this.counters + BigInt(MAX_TILES * 4), 288);
      a.writeFloatLE(norm.eps, 296);
    }
    this.kernels.launch(`gemv_q4_rpg${w0.rowsPerGroup}`, { x: tiles, y: Math.ceil(w0.inFeatures / kPer) }, { x: 128 }, [a], 0, true);
    p.length = 0;
    this.x = null;
    this.pos = null;
    this.maxSeq = 0;
  }
}
