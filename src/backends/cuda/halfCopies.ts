/**
 * The fp16 copies of x that the tensor-core GEMMs of prompt rows read (linearLaunch.ts: gemm_q4_mma,
 * gemm_wgmma_256), kept in two scratch slots and remembered, so that GEMMs over the same x skip the
 * conversion: q, k and v read one copy of the normed x, gate and up another (7 x_to_half passes per
 * layer became 4, 0.27 ms per 13B layer at 2048 rows on an H200, before the producers below).
 * Producers that know their output feeds such GEMMs (rmsnorm_rows_f32, swiglu_rows_f32, the fused
 * gate/up GEMM) write the copy themselves (`reserve`), which removes those conversion passes too.
 *
 * Two slots, because the fused gate/up GEMM reads one copy (its x) while it writes another (its output,
 * down_proj's x). A conversion or a reservation takes the slot used least recently; in a decoder layer
 * that keeps the normed x in one slot and attention's or SwiGLU's output in the other, so each slot
 * grows to its own width only.
 *
 * What a slot holds stays valid while its source is not written: the backend calls `forget` in every op
 * that writes an activation other than through a linear, and `wrote` with a linear's output.
 */
import type { DevicePtr } from './driver.js';
import { i32, ptr } from './kernelArgs.js';
import type { KernelModule } from './module.js';

/**
 * Prompt producers that may write only the fp16 form their declared reader reads (CudaBackend.halfOnly): the RMSNorms
 * ('norm'), the fused gate/up's SwiGLU ('swiglu'), prompt attention ('attention'), and the q/k/v rope launch, whose q
 * goes out as attention's fp16 Q tile ('q').
 */
export type HalfOnlyProducer = 'norm' | 'swiglu' | 'attention' | 'q';
const HALF_ONLY_PRODUCERS: readonly HalfOnlyProducer[] = ['norm', 'swiglu', 'attention', 'q'];

/**
 * $QLLAMA_CUDA_HALF_ONLY: a comma list of HalfOnlyProducer, or 'none'; unset: all of them. $QLLAMA_CUDA_NORM_HALF_ONLY=0
 * (the older switch) drops 'norm'. An unknown name throws, naming the ones there are.
 */
export function halfOnlyFromEnv(env: NodeJS.ProcessEnv = process.env): Set<HalfOnlyProducer> {
  const v = env.QLLAMA_CUDA_HALF_ONLY;
  const names = v === undefined ? [...HALF_ONLY_PRODUCERS] : v === 'none' || v === '' ? [] : v.split(',').map((n) => n.trim());
  const set = new Set<HalfOnlyProducer>();
  for (const n of names) {
    const known = HALF_ONLY_PRODUCERS.find((p) => p === n);
    if (known === undefined) throw new Error(`QLLAMA_CUDA_HALF_ONLY: unknown producer '${n}'; use a comma list of ${HALF_ONLY_PRODUCERS.join(', ')}, or none`);
    set.add(known);
  }
  if (env.QLLAMA_CUDA_NORM_HALF_ONLY === '0') set.delete('norm');
  return set;
}

/**
 * A Q tile written instead of q (HalfCopies.holdQTile): where it is, and, where the launch that wrote it counts its
 * finished tiles per head (gemm_rs_256_qkv_rope32's ready), the counters, the count at which every tile is written, and
 * the fp16 x that launch reads, which attention, overlapping it, must not write.
 */
export interface HeldQTile {
  readonly at: DevicePtr;
  readonly ready: { readonly counters: DevicePtr; readonly target: number; readonly reads: DevicePtr } | null;
}

/** a slot's copy: source activation, rows, width, the column gather applied (0n: none), and where it is */
interface Held {
  readonly src: DevicePtr;
  readonly rows: number;
  readonly cols: number;
  readonly perm: DevicePtr;
  readonly at: DevicePtr;
}

interface Slot {
  held: Held | null;
  lastUse: number;
}

/** widest row (bytes of f32) x_to_half_gather_rows stages in shared memory without an opt-in (48 KiB) */
const GATHER_ROWS_MAX_BYTES = 48 * 1024;

export class HalfCopies {
  private readonly slots: Slot[] = [{ held: null, lastUse: 0 }, { held: null, lastUse: 0 }];
  private uses = 0;
  /** an activation whose f32 rows a producer left unwritten, writing only its fp16 copy (PromptOps.rmsNorm, gateUp, attention) */
  private f32Unwritten: DevicePtr | null = null;
  /** q, written only as attn_flash_wg_128's fp16 Q tile (CudaBackend.qkvRopeKv), and where that tile is */
  private qTile: (HeldQTile & { readonly q: DevicePtr }) | null = null;

  /** @param scratch slot `index`'s fp16 buffer, grown to at least `bytes` (it may move, which the key notices) */
  constructor(private readonly kernels: KernelModule, private readonly scratch: (index: number, bytes: number) => DevicePtr) {}

  /** xh[m, k] = half(x[m, perm ? perm[k] : k]) for rows × cols of x: converted unless a slot holds it. */
  of(x: DevicePtr, rows: number, cols: number, perm: DevicePtr | null): DevicePtr {
    const p = perm ?? (0n as DevicePtr);
    for (let i = 0; i < this.slots.length; i++) {
      const h = this.slots[i].held;
      if (h !== null && h.src === x && h.rows === rows && h.cols === cols && h.perm === p && h.at === this.scratch(i, rows * cols * 2)) {
        this.slots[i].lastUse = ++this.uses;
        return h.at;
      }
    }
    this.checkWritten(x);
    const at = this.take({ src: x, rows, cols, perm: p });
    const args = [ptr(at), ptr(x), ptr(perm), i32(rows), i32(cols)];
    if (perm !== null && cols % 4 === 0 && cols * 4 <= GATHER_ROWS_MAX_BYTES) {
      this.kernels.launch('x_to_half_gather_rows', { x: Math.min(rows, 8192) }, { x: 256 }, args, cols * 4);
    } else {
      const pairs = (rows * cols) / 2;
      this.kernels.launch('x_to_half', { x: Math.min(Math.ceil(pairs / 256), 8192) }, { x: 256 }, args);
    }
    return at;
  }

  /** A slot for a producer that writes src's fp16 copy (gathered through perm, if given) in the launch it issues next. */
  reserve(src: DevicePtr, rows: number, cols: number, perm: DevicePtr | null = null): DevicePtr {
    return this.take({ src, rows, cols, perm: perm ?? (0n as DevicePtr) });
  }

  /**
   * src's f32 rows were left unwritten (only its copy was: true) or written (false) by the op being issued. The mark
   * lasts until src is written or the copies are forgotten (any other op that writes an activation): it catches a
   * declared reader that does not read the copy, which would come right after the producer.
   */
  unwritten(src: DevicePtr, unwritten: boolean): void {
    if (unwritten) this.f32Unwritten = src;
    else if (this.f32Unwritten === src) this.f32Unwritten = null;
  }

  /** throws where a kernel is about to read x's f32 rows and they were left unwritten (unwritten) */
  checkWritten(x: DevicePtr): void {
    if (x === this.f32Unwritten) {
      throw new Error('qllama internal error: a kernel would read an activation whose f32 rows were not written (its producer wrote only ' +
        'the fp16 form its declared reader reads); QLLAMA_CUDA_HALF_ONLY=none works around it');
    }
  }

  /**
   * q's rows were written only as attention's Q tile at `at` (its f32 rows are not): the next attention over q takes it
   * (takeQTile); anything that writes an activation first drops it, as it drops the copies.
   */
  holdQTile(q: DevicePtr, tile: HeldQTile): void {
    this.qTile = { ...tile, q };
    this.f32Unwritten = q;
  }

  /** the Q tile held for q (and no longer held), or null */
  takeQTile(q: DevicePtr): HeldQTile | null {
    const t = this.qTile;
    this.qTile = null;
    return t !== null && t.q === q ? { at: t.at, ready: t.ready } : null;
  }

  /** An activation may have changed: no copy held is trusted. */
  forget(): void {
    for (const s of this.slots) s.held = null;
    this.f32Unwritten = null;
    this.qTile = null;
  }

  /** `y` was written (a linear's output): forget the copies of y. */
  wrote(y: DevicePtr): void {
    for (const s of this.slots) if (s.held?.src === y) s.held = null;
    if (this.f32Unwritten === y) this.f32Unwritten = null;
    if (this.qTile?.q === y) this.qTile = null;
  }

  /** The least recently used slot, sized and recorded as holding `what`. */
  private take(what: Omit<Held, 'at'>): DevicePtr {
    const i = this.slots[0].lastUse <= this.slots[1].lastUse ? 0 : 1;
    const at = this.scratch(i, what.rows * what.cols * 2);
    this.slots[i] = { held: { ...what, at }, lastUse: ++this.uses };
    return at;
  }
}
