/**
 * One-token int4 GEMVs, batched: consecutive `linear` calls that read the same x (q/k/v, gate/up)
 * wait here and go out as one launch of `gemv_q4_rpg*` over all their matrices. Ops the model issues
 * right after them fold into that launch's epilogue instead of running as kernels of their own:
 *   rope(q), rope(k)                  → rotary embedding on the finished tile (head size 128)
 *   writeKv(k, v)                     → fp16 KV-cache store of the finished k and v tiles
 *   attention(q, cache), short cache  → each head's attention, run by the block that finishes the last of its q, k
 *                                       and v tiles (foldAttentionInto; gemv_q4.cu q4_fold_attention)
 *   swiglu(hidden, gate, up)          → silu(gate)·up written beside gate and up
 *   rmsNorm(xb, x) before GEMVs of xb → deferred to the GEMV batch that reads xb: its blocks normalize x
 *                                       themselves (input norm, gemv_q4.cu xNormW), no kernel of its own
 *   rmsNorm(xb, x) after x += W·h     → with the norm in the tail ($QLLAMA_CUDA_NORM=tail): the launch's
 *                                       last block normalizes the finished x (normEpilogue), which can
 *                                       write the permuted copy
 * Held launches: a launch that can do something for the NEXT GEMV batch waits until that batch is
 * complete, and then goes out knowing it:
 *   - permuted x (act-order): when the batch reads the launch's one-row output as x through a
 *     layer's permutation, the launch also writes the output in that row order (one scatter store per
 *     value), and the GEMV stages it linearly like a compat layer's x (flag 4), with no gather.
 *     Producers: attention (o_proj's input), the SwiGLU epilogue (gate/up; down reads linearly anyway
 *     when gate/up were uploaded in its order) and, with the norm in the tail, the norm epilogue and
 *     one-row rmsnorm (input norms read the raw residual, which has no producer to ask).
 *     GPTQ-for-LLaMa act-order files share one permutation among q/k/v and among
 *     gate/up (one input, one Hessian); upload gives equal permutations one device buffer
 *     (linearUpload.ts), so one copy serves the whole batch; a member with another permutation
 *     gathers as before.
 * Held launches go out in the order issued, before the batch they waited for or before any other op,
 * so the stream runs the model's order. Graph capture records them as issued: a captured decode step
 * carries the same copies as an eager one, with no learning and no re-capture.
 * Split-K partial sums go through a workspace that the kernel leaves zeroed, so no memsets; on sm_90
 * (`clusters`) batches other than residual adds launch a tile's K ranges as one thread-block cluster instead,
 * whose leader adds them from distributed shared memory (gemv_q4.cu, gemv_q4_cl_*): no workspace round trips
 * or ticket, the input norm's Σx² from the ranges each block stages, and sums in a fixed order.
 */
import type { DevicePtr, Dim3 } from './driver.js';
import { f32, i32, ptr } from './kernelArgs.js';
import { kPerBlock } from './kSplit.js';
import type { CudaGptq } from './linearUpload.js';
import type { KernelModule } from './module.js';

/** tiles of 128 outputs one launch may hold (workspace: 128 f32 each; counters: one u32 each) */
export const MAX_TILES = 8192;
const MAX_MATS = 3;
const MAT_BYTES = 64;
/** sizeof(Q4Args) in gemv_q4.cu, and the byte offsets of its fields after the 3 Q4Mat */
const ARGS_BYTES = 392;
const AT = {
  ws: 192, counters: 200, swiglu: 208, x: 216, posPtr: 224, posImm: 232, count: 236, K: 240, gs: 244, maxSeq: 248,
  kPerBlock: 252, swigluInv: 256, swigluPerm: 264, normW: 272, normOut: 280, normCounter: 288, eps: 296, xInShared: 300,
  normInv: 304, normPerm: 312, xNormW: 320, xNormOut: 328, xEps: 336, xNormPermuted: 340,
  attnOut: 344, attnInv: 352, attnPermOut: 360, attnCounters: 368, attnHeads: 376, attnKvHeads: 380, attnScale: 384,
} as const;
/** sizeof(NextGemv) in common.cuh (inv, permOut): the last argument of rmsnorm_f32 and attn_split_<d> */
export const NEXT_GEMV_BYTES = 16;
/** permuted-x buffers, used in rotation by successive producers */
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
/** most blocks in one cluster (Q4_CLUSTER_MAX in gemv_q4.cu: the portable cluster size) */
const CLUSTER_MAX = 8;
/**
 * widest x a cluster launch that gathers (act-order) copies into dynamic shared memory in its Σx² loop and gathers
 * from there (gemv_q4.cu xInShared); wider ones gather from global memory. The backend lets gemv_q4_cl_* take that
 * much (CudaBackend).
 */
export const CLUSTER_SHARED_X_K = 8192;

/**
 * Whether one-token batches launch as thread-block clusters where they can (sm_90; $QLLAMA_CUDA_CLUSTER=0: off).
 * H200, 13B decode GEMV lab (bench/lab/gemvAblateLab.cu): q/k/v + norm 14.3 → 11.9 µs, gate/up + norm + SwiGLU
 * 23.4 → 20.1 µs per launch (bench/cudaNotes.md, fifteenth pass).
 */
export function clusterDefault(): boolean {
  return process.env.QLLAMA_CUDA_CLUSTER !== '0';
}

/**
 * The cluster shape of a one-token GEMV launch (gemv_q4_cl_*), or null for the plain launch: a tile's K ranges,
 * times the two tiles of a SwiGLU pair, at most CLUSTER_MAX blocks. Residual adds (one matrix added into y,
 * no KV write) keep their float atomics into y, which cost them little and allow more ranges; a launch with
 * the RMSNorm tail ($QLLAMA_CUDA_NORM=tail) keeps the plain kernel, whose ticket counts every block.
 */
export function gemvCluster(ranges: number, pair: boolean, residualAdd: boolean, normTail: boolean): Dim3 | null {
  const x = pair ? 2 : 1;
  if (residualAdd || normTail || x * ranges > CLUSTER_MAX) return null;
  return { x, y: ranges };
}

/**
 * Whether producers write act-order consumers' inputs permuted ($QLLAMA_CUDA_PERMX=0: off, so act-order
 * GEMVs gather x through their permutation while staging it). With input norms (the default) the one
 * producer left is attention, writing o_proj's input: H200, 13B act-order decode, two runs each in one
 * call, 362.2 / 363.0 → 375.6 / 381.0 tok/s at context 1 and 311.8 / 311.5 → 326.9 / 327.3 at 2000 (+4–5%;
 * bench/cudaNotes.md, twelfth pass). It was off before: on the H100 with the norm in the producers' tail
 * it measured −2% at context 1 and +1.3% at 2000 (seventh pass).
 */
export function permuteXDefault(): boolean {
  return process.env.QLLAMA_CUDA_PERMX !== '0';
}

/**
 * Where a one-row RMSNorm before GEMVs runs: 'input' (default) in the blocks of the GEMV batch that
 * reads it (each block sums x² itself, no serial tail), 'tail' ($QLLAMA_CUDA_NORM=tail) in the last block
 * of the residual-add GEMV that produced x, as before (bench/cudaNotes.md, eighth pass).
 */
export function inputNormDefault(): boolean {
  return process.env.QLLAMA_CUDA_NORM !== 'tail';
}

/**
 * Whether act-order batches with an input norm read the norm weight in their row order (registered with
 * permutedNorm) instead of gathering it through the permutation beside x; $QLLAMA_CUDA_NORM_PERM=0: off.
 */
export function permutedNormDefault(): boolean {
  return process.env.QLLAMA_CUDA_NORM_PERM !== '0';
}

/**
 * Most positions (the KV cache's length, or a captured step's bucket) at which one-token attention of head size 128
 * folds into the q/k/v launch (foldAttentionInto): one block per head then reads the whole cache, which pays while it
 * is short. H200, 13B decode at positions 8..107, same call, folded / not: compat 443.2 / 437.4 vs 428.4 / 436.4 tok/s,
 * act-order 411.7 / 409.0 vs 399.2 / 404.8 (+2%; bench/cudaNotes.md, sixteenth pass).
 */
export const FOLD_ATTENTION_MAX_POSITIONS = 128;
/**
 * Whether attention with grouped heads (kvHeads < heads, a whole number of query heads per KV head) folds too: a k or
 * v tile then serves its group's query heads (q4_fold_attention's tickets). GPU test: decodeVariants, GQA model.
 */
export const FOLD_GROUPED_HEADS = true;
/** most query heads a folded attention serves (its tickets: CudaBackend allocates this many) */
export const FOLD_ATTENTION_MAX_HEADS = 256;

/** Whether short one-token attention folds into the q/k/v launch ($QLLAMA_CUDA_FOLD_ATTN=0: off, attention launches). */
export function foldAttentionDefault(): boolean {
  return process.env.QLLAMA_CUDA_FOLD_ATTN !== '0';
}

/** Key of a norm weight in a permutation's order (GemvBatch.permutedNorm). */
const normKey = (norm: DevicePtr, perm: DevicePtr): string => `${norm}:${perm}`;

/** A one-row rmsnorm waiting for the GEMV batch that reads its output. */
interface DeferredNorm {
  readonly out: DevicePtr;
  readonly x: DevicePtr;
  readonly w: DevicePtr;
  readonly eps: number;
  readonly dim: number;
}

interface Pending {
  readonly y: DevicePtr;
  readonly w: CudaGptq;
  readonly accumulate: boolean;
  ropeTheta: number; // 0: none
  cache: DevicePtr | null;
  /** x already in this weight's row order (act-order), read linearly; else null */
  readonly xPerm: DevicePtr | null;
}

/** A launch waiting for the next GEMV batch, which may read its output permuted. */
interface Held {
  readonly name: string;
  readonly grid: Dim3;
  readonly block: Dim3;
  readonly args: Buffer[];
  /** its one-row output that the next GEMV may read as x ([dim] f32) */
  readonly out: DevicePtr;
  readonly dim: number;
  /** the argument bytes holding its (inv, permOut) pointers at permAt */
  readonly fields: Buffer;
  readonly permAt: number;
  /** thread-block cluster shape, when launched as clusters */
  readonly cluster?: Dim3 | null;
  /** dynamic shared memory bytes */
  readonly shared?: number;
  /** set when a consumer reads `out` permuted: that consumer's inverse permutation and the copy's buffer */
  perm: { readonly inv: DevicePtr; readonly buf: DevicePtr } | null;
}

interface PosRef { readonly ptr: DevicePtr | null; readonly imm: number }

/** What a GEMV launch writes after its sums: SwiGLU of a gate/up pair into `swiglu`, or the next RMSNorm. */
interface Epilogue {
  readonly swiglu?: DevicePtr;
  readonly norm?: { readonly out: DevicePtr; readonly w: DevicePtr; readonly eps: number };
  /** decode attention of each head folded into a q/k/v launch (foldAttentionInto) */
  readonly attn?: { readonly out: DevicePtr; readonly heads: number; readonly kvHeads: number; readonly scale: number };
}

export class GemvBatch {
  private readonly pending: Pending[] = [];
  private x: DevicePtr | null = null;
  private pos: PosRef | null = null;
  private maxSeq = 0;
  private readonly held: Held[] = [];
  /** x whose copy in row order `perm` a held launch writes into buf; the batch's members with that permutation read it */
  private tag: { readonly x: DevicePtr; readonly perm: DevicePtr; readonly buf: DevicePtr } | null = null;
  private nextBuf = 0;
  /** producers write act-order consumers' inputs already permuted (permuteXDefault) */
  permuteX = permuteXDefault();
  /** one-row norms run inside the GEMV batch that reads them (inputNormDefault) */
  inputNorm = inputNormDefault();
  /** input-norm batches read registered permuted norm weights (permutedNormDefault) */
  usePermutedNorms = permutedNormDefault();
  /** batches launch as thread-block clusters where gemvCluster allows (the backend sets it on sm_90) */
  clusters = false;
  /** short one-token attention folds into the q/k/v launch (foldAttentionDefault) */
  foldAttention = foldAttentionDefault();
  /** the folded attention's tickets ([FOLD_ATTENTION_MAX_HEADS] u32, zero between launches); null: no folding */
  attnCounters: DevicePtr | null = null;
  /** attentions folded so far (a count for tests and profiles; captured ones count once) */
  attentionFolds = 0;
  /** norm weights in act-order row orders, by normKey(norm, perm) */
  private readonly permutedNorms = new Map<string, DevicePtr>();
  /** a norm waiting for its consumer batch (inputNorm) */
  private deferred: DeferredNorm | null = null;
  /** the input norm the pending batch runs (its x is `norm.out`, computed from `norm.x`) */
  private norm: DeferredNorm | null = null;

  /** @param permBufs PERM_BUFFERS f32 buffers of MAX_PERM_K values each */
  constructor(private readonly kernels: KernelModule, private readonly ws: DevicePtr, private readonly counters: DevicePtr,
    readonly smCount: number, private readonly permBufs: readonly DevicePtr[]) {}

  /**
   * K values per block of gemv_q4 (kSplit.ts): one wave of BLOCKS_PER_SM blocks per SM, at least one slice per
   * warp, at most MAX_SLICES_PER_BLOCK slices and as many ranges. The even split, H200, 13B decode profile:
   * act-order 353.7 → 360.0 tok/s at context 1 and 304.8 → 309.5 at 2000; compat within noise.
   * $QLLAMA_CUDA_KSPLIT=warps restores the old rule (ranges in multiples of 4 slices), for comparisons.
   */
  static kPerBlock(K: number, tiles: number, smCount: number): number {
    const limits = { blocksPerSm: BLOCKS_PER_SM, minSlices: 4, maxSlices: MAX_SLICES_PER_BLOCK, maxRanges: MAX_SLICES_PER_BLOCK };
    return kPerBlock(K, tiles, smCount, limits, process.env.QLLAMA_CUDA_KSPLIT === 'warps' ? 4 : 1);
  }

  /**
   * Registers `permuted` = norm[perm[i]]: a batch whose members all gather x through `perm` and normalize
   * it with `norm` reads this copy linearly (gemv_q4.cu xNormPermuted) instead of gathering the weight too.
   */
  permutedNorm(norm: DevicePtr, perm: DevicePtr, permuted: DevicePtr): void {
    this.permutedNorms.set(normKey(norm, perm), permuted);
  }

  /** Whether a permuted copy of `norm` in `perm`'s order is registered. */
  hasPermutedNorm(norm: DevicePtr, perm: DevicePtr): boolean {
    return this.permutedNorms.has(normKey(norm, perm));
  }

  /** The waiting batch's input-norm weight in its members' one row order, when registered and switched on. */
  private batchPermutedNorm(norm: DevicePtr): DevicePtr | null {
    const p = this.pending, perm = p[0].w.perm;
    if (!this.usePermutedNorms || perm === null || p.some((e) => e.w.perm !== perm || e.xPerm !== null)) return null;
    return this.permutedNorms.get(normKey(norm, perm)) ?? null;
  }

  /** Whether the fused kernel serves this weight for one row. */
  static fits(w: CudaGptq): boolean {
    return w.layout === 'q4' && Math.ceil(w.outFeatures / 128) <= MAX_TILES;
  }

  /**
   * out = rmsnorm(x)·w over `rows` rows: one row as the epilogue of the waiting residual-add GEMV that
   * produces x when there is one (o_proj and down_proj before the next norm: no kernel of its own),
   * else rmsnorm_f32 (one row: held for the next GEMV like attention).
   */
  rmsNorm(out: DevicePtr, x: DevicePtr, w: DevicePtr, eps: number, rows: number, dim: number): void {
    if (rows === 1 && this.inputNorm && out !== x && dim % 4 === 0) {
      this.flush();
      this.deferred = { out, x, w, eps, dim };
      return;
    }
    if (rows === 1 && this.normEpilogue(out, x, w, eps, dim)) return;
    this.launchNorm(out, x, w, eps, rows, dim);
  }

  private launchNorm(out: DevicePtr, x: DevicePtr, w: DevicePtr, eps: number, rows: number, dim: number): void {
    const nx = Buffer.alloc(NEXT_GEMV_BYTES);
    this.launchBeforeGemv('rmsnorm_f32', { x: rows }, { x: 1024 }, [ptr(out), ptr(x), ptr(w), f32(eps), i32(dim), nx], nx, rows === 1 ? out : null, dim);
  }

  /** Runs a deferred norm as a kernel of its own (its output is read by something other than a GEMV batch). */
  private materialize(): void {
    const d = this.deferred;
    if (d === null) return;
    this.deferred = null;
    this.launchNorm(d.out, d.x, d.w, d.eps, 1, d.dim);
  }

  /**
   * out = rmsnorm(x)·w of one row as the epilogue of the waiting residual-add GEMV that produces x;
   * false when no such GEMV waits (the caller runs the norm itself).
   */
  normEpilogue(out: DevicePtr, x: DevicePtr, w: DevicePtr, eps: number, dim: number): boolean {
    const p = this.pending;
    if (p.length !== 1) return false;
    const e = p[0];
    if (e.y !== x || !e.accumulate || e.ropeTheta !== 0 || e.cache !== null || e.w.bias !== null || e.w.outFeatures !== dim || dim % 4 !== 0) return false;
    this.finalize(true, { norm: { out, w, eps } });
    return true;
  }

  /**
   * Launches a kernel whose last argument is a NextGemv (common.cuh; `nx`, its bytes, zeroed). With a
   * one-row output `out` ([dim] f32) and permuteX it is held until the next GEMV batch is known
   * (permuted copy); otherwise it goes out now.
   */
  launchBeforeGemv(name: string, grid: Dim3, block: Dim3, args: Buffer[], nx: Buffer, out: DevicePtr | null, dim: number): void {
    if (out !== null && this.permuteX) {
      this.finalize(true);
      this.tag = null;
      this.held.push({ name, grid, block, args, out, dim, fields: nx, permAt: 0, perm: null });
      return;
    }
    this.flush();
    this.kernels.launch(name, grid, block, args, 0, true);
  }

  /** Queues y (+)= x Wᵀ; the waiting batch goes out first when this cannot join it. */
  add(y: DevicePtr, x: DevicePtr, w: CudaGptq, accumulate: boolean): void {
    if (this.pending.length > 0 && !this.joins(y, x, w)) this.finalize(true);
    const d = this.deferred;
    if (d !== null) {
      this.deferred = null;
      // the batch normalizes its input itself; a GEMV that does not read the norm's output, or whose
      // output overwrites the residual the norm reads, gets the norm as a kernel first
      if (this.pending.length === 0 && x === d.out && w.inFeatures === d.dim && y !== d.x && y !== d.out) this.norm = d;
      else this.launchNorm(d.out, d.x, d.w, d.eps, 1, d.dim);
    }
    if (this.tag !== null && y === this.tag.x) this.tag = null;
    let xPerm: DevicePtr | null = null;
    if (this.permuteX && w.perm !== null && w.invPerm !== null && w.inFeatures <= MAX_PERM_K) {
      if (this.tag === null || this.tag.x !== x) this.tagProducer(x, w);
      const t = this.tag;
      if (t !== null && t.x === x && t.perm === w.perm) xPerm = t.buf;
    }
    this.x = x;
    this.pending.push({ y, w, accumulate, ropeTheta: 0, cache: null, xPerm });
  }

  /** Folds rope of a waiting output into its epilogue; false when it cannot (caller runs rope_f32). */
  addRope(y: DevicePtr, heads: number, headDim: number, theta: number, pos: PosRef): boolean {
    const e = this.pending.find((q) => q.y === y);
    if (!e || e.w.bias !== null || headDim !== 128 || e.accumulate || e.ropeTheta !== 0 || e.cache !== null || e.w.outFeatures !== heads * headDim || !this.samePos(pos)) return false;
    e.ropeTheta = theta;
    this.pos = pos;
    return true;
  }

  /**
   * Folds one-token decode attention (head size 128) into the waiting q/k/v launch: out = attention of the waiting
   * q over the caches kc / vc, which the waiting k and v write this step (gemv_q4.cu q4_fold_attention). The launch
   * is then held like attention's own, so o_proj can ask it for its input permuted. False, doing nothing, when the
   * waiting batch is not exactly q (rope), k (rope, KV write into kc) and v (KV write into vc) of those shapes, or the
   * heads are grouped (kvHeads < heads) and FOLD_GROUPED_HEADS is off, or do not group evenly.
   */
  foldAttentionInto(out: DevicePtr, q: DevicePtr, kc: DevicePtr, vc: DevicePtr, heads: number, kvHeads: number, scale: number, pos: PosRef): boolean {
    const p = this.pending;
    const grouping = FOLD_GROUPED_HEADS ? heads % kvHeads === 0 : kvHeads === heads;
    if (!this.foldAttention || this.attnCounters === null || p.length !== 3 || heads > FOLD_ATTENTION_MAX_HEADS || !grouping) return false;
    const [pq, pk, pv] = p;
    if (pq.y !== q || pq.ropeTheta === 0 || pq.cache !== null || pk.ropeTheta === 0 || pk.cache !== kc || pv.ropeTheta !== 0 || pv.cache !== vc) return false;
    if (pq.w.outFeatures !== heads * 128 || pk.w.outFeatures !== kvHeads * 128 || pv.w.outFeatures !== kvHeads * 128 || !this.samePos(pos)) return false;
    if (p.some((e) => e.accumulate || e.w.bias !== null) || out === q) return false;
    this.finalize(true, { attn: { out, heads, kvHeads, scale } });
    this.attentionFolds++;
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

  /** Folds SwiGLU into the waiting gate/up pair's epilogue; false when the batch is not that pair. */
  swiglu(out: DevicePtr, gate: DevicePtr, up: DevicePtr): boolean {
    const p = this.pending;
    if (p.length !== 2 || p[0].y !== gate || p[1].y !== up || out === gate || out === up) return false;
    if (p.some((q) => q.w.bias !== null || q.accumulate || q.ropeTheta !== 0 || q.cache !== null) || p[0].w.outFeatures !== p[1].w.outFeatures) return false;
    this.finalize(true, { swiglu: out });
    return true;
  }

  /** Sends everything waiting (before any other op). */
  flush(): void {
    this.finalize(false);
    this.release();
    this.tag = null;
    this.materialize();
  }

  private joins(y: DevicePtr, x: DevicePtr, w: CudaGptq): boolean {
    const p = this.pending;
    const w0 = p[0].w;
    const tiles = p.reduce((s, q) => s + Math.ceil(q.w.outFeatures / 128), 0) + Math.ceil(w.outFeatures / 128);
    if (this.norm !== null && y === this.norm.x) return false;
    return w.bias === null && w0.bias === null && this.x === x && y !== x && p.length < MAX_MATS && tiles <= MAX_TILES && w.inFeatures === w0.inFeatures &&
      w.groupSize === w0.groupSize && w.rowsPerGroup === w0.rowsPerGroup && p.every((q) => q.y !== y) &&
      p.every((q) => q.ropeTheta === 0 && q.cache === null);
  }

  /** The latest held launch that writes x: asks it for a copy in w's row order, when it can write one. */
  private tagProducer(x: DevicePtr, w: CudaGptq): void {
    for (let i = this.held.length - 1; i >= 0; i--) {
      const h = this.held[i];
      if (h.out !== x) continue;
      if (h.perm === null && h.dim === w.inFeatures) {
        const buf = this.permBufs[this.nextBuf];
        this.nextBuf = (this.nextBuf + 1) % PERM_BUFFERS;
        h.perm = { inv: w.invPerm!, buf };
        this.tag = { x, perm: w.perm!, buf };
      }
      return;
    }
  }

  private samePos(pos: PosRef): boolean {
    return this.pos === null || (this.pos.ptr === pos.ptr && this.pos.imm === pos.imm);
  }

  /**
   * The waiting batch as one launch: the held launches go out first, knowing this batch; then it is
   * held itself (hold, permuteX, and an epilogue output the next batch may read permuted) or goes out.
   */
  private finalize(hold: boolean, epi: Epilogue = {}): void {
    const p = this.pending;
    if (p.length === 0) return;
    const w0 = p[0].w;
    const tiles = p.reduce((s, e) => s + Math.ceil(e.w.outFeatures / 128), 0);
    const kPer = GemvBatch.kPerBlock(w0.inFeatures, tiles, this.smCount);
    const grid = { x: tiles, y: Math.ceil(w0.inFeatures / kPer) }, block = { x: 128 };
    const residualAdd = p.length === 1 && p[0].accumulate && p[0].cache === null && p[0].ropeTheta === 0 && epi.swiglu === undefined;
    const cluster = this.clusters ? gemvCluster(grid.y, epi.swiglu !== undefined, residualAdd, epi.norm !== undefined) : null;
    const name = `gemv_q4_${epi.norm ? 'tail_' : cluster ? 'cl_' : ''}rpg${w0.rowsPerGroup}`;
    // a cluster launch that gathers x (act-order) stages all of x in shared memory first
    const xShared = cluster !== null && w0.inFeatures <= CLUSTER_SHARED_X_K && p.some((e) => e.w.perm !== null && e.xPerm === null);
    const shared = xShared ? w0.inFeatures * 4 : 0;
    const a = this.args(kPer, epi);
    a.writeInt32LE(xShared ? 1 : 0, AT.xInShared);
    const out = epi.swiglu ?? epi.norm?.out ?? epi.attn?.out;
    const dim = w0.outFeatures;
    p.length = 0;
    this.x = null;
    this.norm = null;
    this.pos = null;
    this.maxSeq = 0;
    this.tag = null;
    this.release();
    if (hold && this.permuteX && out !== undefined) {
      const permAt = epi.swiglu !== undefined ? AT.swigluInv : epi.attn !== undefined ? AT.attnInv : AT.normInv;
      this.held.push({ name, grid, block, args: [a], out, dim, fields: a, permAt, perm: null, cluster, shared });
    } else {
      this.kernels.launch(name, grid, block, [a], shared, true, cluster ?? undefined);
    }
  }

  /**
   * Sends the held launches in order, each with the permuted copy its consumer asked for, if any. The list
   * is emptied first: a launch hook that flushes the batch again (bench/cudaPrefillProfile.ts synchronizes
   * after every launch) then finds nothing held instead of recursing.
   */
  private release(): void {
    for (const h of this.held.splice(0)) {
      if (h.perm !== null) {
        h.fields.writeBigUInt64LE(h.perm.inv, h.permAt);
        h.fields.writeBigUInt64LE(h.perm.buf, h.permAt + 8);
      }
      this.kernels.launch(h.name, h.grid, h.block, h.args, h.shared ?? 0, true, h.cluster ?? undefined);
    }
  }

  /** Q4Args (gemv_q4.cu) of the waiting batch; the permuted-copy pointers are left zero. */
  private args(kPer: number, epi: Epilogue): Buffer {
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
    a.writeBigUInt64LE(this.ws, AT.ws);
    a.writeBigUInt64LE(this.counters, AT.counters);
    a.writeBigUInt64LE(epi.swiglu ?? 0n, AT.swiglu);
    a.writeBigUInt64LE(this.norm?.x ?? this.x!, AT.x);
    a.writeBigUInt64LE(this.pos?.ptr ?? 0n, AT.posPtr);
    a.writeInt32LE(this.pos?.imm ?? 0, AT.posImm);
    a.writeInt32LE(p.length, AT.count);
    a.writeInt32LE(w0.inFeatures, AT.K);
    a.writeInt32LE(w0.groupSize, AT.gs);
    a.writeInt32LE(this.maxSeq, AT.maxSeq);
    a.writeInt32LE(kPer, AT.kPerBlock);
    if (epi.norm) {
      a.writeBigUInt64LE(epi.norm.w, AT.normW);
      a.writeBigUInt64LE(epi.norm.out, AT.normOut);
      a.writeBigUInt64LE(this.counters + BigInt(MAX_TILES * 4), AT.normCounter);
      a.writeFloatLE(epi.norm.eps, AT.eps);
    }
    if (epi.attn) {
      a.writeBigUInt64LE(epi.attn.out, AT.attnOut);
      a.writeBigUInt64LE(this.attnCounters!, AT.attnCounters);
      a.writeInt32LE(epi.attn.heads, AT.attnHeads);
      a.writeInt32LE(epi.attn.kvHeads, AT.attnKvHeads);
      a.writeFloatLE(epi.attn.scale, AT.attnScale);
    }
    if (this.norm !== null) {
      const permuted = this.batchPermutedNorm(this.norm.w);
      a.writeBigUInt64LE(permuted ?? this.norm.w, AT.xNormW);
      a.writeInt32LE(permuted !== null ? 1 : 0, AT.xNormPermuted);
      a.writeBigUInt64LE(this.norm.out, AT.xNormOut);
      a.writeFloatLE(this.norm.eps, AT.xEps);
    }
    return a;
  }
}
