/**
 * The CUDA backend's prompt-row ops around the tensor-core GEMMs (rows > 1): RMSNorm and SwiGLU kernels
 * that also write the fp16 copy of their output that the next GEMMs read (halfCopies.ts), and a LLaMA
 * MLP's gate, up and SwiGLU as one wgmma GEMM (wgmmaLinear.ts launchWgmmaGateUp). One-row (decode) work
 * stays with the GEMV batch (gemvBatch.ts); each op here says whether it took the call.
 */
import type { DevicePtr, Driver } from './driver.js';
import { f32, i32, ptr } from './kernelArgs.js';
import type { DeviceRows } from './batchOps.js';
import { HalfCopies } from './halfCopies.js';
import type { CudaGptq, CudaLinear } from './linearUpload.js';
import { WGMMA_MIN_ROWS } from './linearLaunch.js';
import type { KernelModule } from './module.js';
import { launchRsGateUp, launchRsQkv, launchRsQkvRope, RS_GATE_UP_OUTPUTS, rsFits, rsPlainTiles, rsQkvFits, type QTile } from './rsLinear.js';
import { GATE_UP_PAIR, launchWgmmaGateUp, planWgmma, type WgmmaOptions } from './wgmmaLinear.js';

/** rmsnorm_rows_f32's widest row (rmsnorm.cu: RN_THREADS · RN_VEC float4) */
const RMSNORM_ROWS_MAX_DIM = 256 * 8 * 4;
/** rmsnorm_rows_f32_narrow's widest row (rmsnorm.cu: RN_THREADS · RN_VEC_NARROW float4) */
const RMSNORM_NARROW_MAX_DIM = 256 * 5 * 4;

/** What the ops need of the backend (CudaBackend builds it). */
export interface PromptOpsHost {
  readonly cu: Driver;
  readonly kernels: KernelModule;
  /** fp16 copy slot `index`, grown to at least `bytes` */
  halfScratch(index: number, bytes: number): DevicePtr;
  /** whether `rows` prompt rows go through a tensor-core GEMM that reads x's fp16 copy */
  gemmReadsHalf(rows: number): boolean;
  /** the wgmma GEMM's options where the backend runs it and fuses gate/up with it, else null */
  fusedGateUp(): WgmmaOptions | null;
  /** the same where it runs q, k and v as one register-A launch, else null */
  fusedQkv(): WgmmaOptions | null;
  /** sends held one-row work (gemvBatch.ts) out */
  flush(): void;
}

/**
 * Whether every one of a norm's readers takes, at prompt rows where the GEMMs read fp16 copies (PromptOpsHost.gemmReadsHalf),
 * a GEMM that reads the copy the norm writes (launchLinear's tensor-core branch, and the fused q/k/v and gate/up launches:
 * 4-bit q4 GPTQ with K % 64, N % 8, group size % 32), in that copy's column order (perm: the norm's gathered order).
 */
export function halfCopyReaders(readers: readonly CudaLinear[], dim: number, perm: DevicePtr | null): boolean {
  return readers.length > 0 && readers.every((r) => r.kind === 'gptq' && r.layout === 'q4' && r.bits === 4 && r.inFeatures === dim &&
    dim % 64 === 0 && r.outFeatures % 8 === 0 && r.groupSize % 32 === 0 && (r.perm ?? null) === perm);
}

/**
 * gate and up as 4-bit q4 GPTQ of one shape and group size (what the fused gate/up launches and the side-by-side
 * layout of CudaBackend.pairLinears need of both), or null
 */
export function q4Pair(g: CudaLinear, u: CudaLinear): readonly [CudaGptq, CudaGptq] | null {
  if (g.kind !== 'gptq' || u.kind !== 'gptq' || g.layout !== 'q4' || u.layout !== 'q4' || g.bits !== 4 || u.bits !== 4) return null;
  return g.inFeatures === u.inFeatures && g.outFeatures === u.outFeatures && g.groupSize === u.groupSize ? [g, u] : null;
}

export class PromptOps {
  /** the fp16 copies the GEMMs read; the backend forgets them in every op that writes an activation otherwise */
  readonly copies: HalfCopies;

  /**
   * rows up to RMSNORM_NARROW_MAX_DIM wide go to rmsnorm_rows_f32_narrow: twice the blocks per SM, the same bits
   * ($QLLAMA_CUDA_NORM_NARROW=0: never). H200, 13B, 2048 rows: +0.26% (24,102 vs 24,042 tok/s, three pairs).
   */
  normNarrow = process.env.QLLAMA_CUDA_NORM_NARROW !== '0';

  constructor(private readonly host: PromptOpsHost) {
    this.copies = new HalfCopies(host.kernels, (i, bytes) => host.halfScratch(i, bytes));
  }

  /**
   * The act-order permutation that every linear reading norm weight `w`'s output shares (CudaBackend.declareInputNorm):
   * rmsNorm then writes the fp16 copy in that row order, which is the copy those GEMMs read.
   */
  readonly normConsumerPerm = new Map<DevicePtr, DevicePtr>();

  /** the linears that read each norm weight's output (CudaBackend.declareInputNorm) */
  readonly normReaders = new Map<DevicePtr, readonly CudaLinear[]>();

  /**
   * out = rmsnorm(x) · w for prompt rows (rmsnorm_rows_f32) where its shape fits; false: not taken. declaredOnly: only
   * w's declared readers read out; where each of them reads the fp16 copy this writes (halfCopyReaders), the f32 rows
   * are not written, and a reader about to read them throws instead (HalfCopies.unwritten).
   */
  rmsNorm(out: DeviceRows, x: DeviceRows, w: DevicePtr, eps: number, rows: number, declaredOnly = false): boolean {
    const dim = x.cols;
    if (rows < 2 || dim % 4 !== 0 || dim > RMSNORM_ROWS_MAX_DIM) return false;
    this.host.flush();
    const perm = this.normConsumerPerm.get(w) ?? null;
    const half = this.halfFor(out, rows, perm);
    const gathers = half !== null && perm !== null;
    const readers = this.normReaders.get(w);
    const halfOnly = declaredOnly && half !== null && out.ptr !== x.ptr && readers !== undefined && halfCopyReaders(readers, dim, perm);
    this.copies.unwritten(out.ptr, halfOnly);
    this.host.kernels.launch(this.normNarrow && dim <= RMSNORM_NARROW_MAX_DIM ? 'rmsnorm_rows_f32_narrow' : 'rmsnorm_rows_f32', { x: rows }, { x: 256 },
      [ptr(halfOnly ? null : out.ptr), ptr(half), ptr(x.ptr), ptr(w), f32(eps), i32(dim), ptr(gathers ? perm : null)], gathers ? dim * 4 : 0, true);
    return true;
  }

  /** out = silu(gate) · up for prompt rows (swiglu_rows_f32) where the width fits; false: not taken */
  swiglu(out: DeviceRows, gate: DeviceRows, up: DeviceRows, rows: number): boolean {
    if (rows < 2 || out.cols % 4 !== 0) return false;
    this.host.flush();
    const n = rows * out.cols;
    this.host.kernels.launch('swiglu_rows_f32', { x: Math.min(Math.ceil(n / 4 / 256), 8192) }, { x: 256 },
      [ptr(out.ptr), ptr(this.halfFor(out, rows)), ptr(gate.ptr), ptr(up.ptr), i32(n)], 0, true);
    return true;
  }

  /**
   * out = silu(x Gᵀ) ⊙ (x Uᵀ) in one wgmma GEMM (and out's fp16 copy for down_proj) where the rows, kernels
   * and weights allow: both q4 4-bit without bias, one shape, group size and permutation; false: not taken.
   */
  gateUp(out: DeviceRows, x: DeviceRows, gate: CudaLinear, up: CudaLinear, rows: number, halfReader: CudaLinear | null = null): boolean {
    const wg = this.host.fusedGateUp();
    if (wg === null) return false;
    const pair = q4Pair(gate, up);
    if (pair === null) return false;
    const [g, u] = pair, K = g.inFeatures, N = g.outFeatures;
    if (g.bias || u.bias || u.perm !== g.perm) return false;
    if (K % 64 !== 0 || N % GATE_UP_PAIR !== 0 || g.groupSize % 32 !== 0 || out.cols !== N) return false;
    const rs = N % RS_GATE_UP_OUTPUTS === 0 && wg.takesRs(rows, N / RS_GATE_UP_OUTPUTS) && rsFits(g) && rsFits(u);
    if (!rs && rows < WGMMA_MIN_ROWS) return false;
    this.host.flush();
    this.copies.wrote(out.ptr); // x's copy stays (rmsnorm_rows_f32 usually wrote it)
    const plan = rs ? null : planWgmma(wg, rows, 2 * N, K, true); // before launching: growing the scratch synchronizes
    const xh = this.copies.of(x.ptr, rows, K, g.perm);
    const yh = this.copies.reserve(out.ptr, rows, N);
    // the register-A launch writes only the copy where out's one reader (down_proj) reads it
    const halfOnly = plan === null && halfReader !== null && halfCopyReaders([halfReader], N, null);
    this.copies.unwritten(out.ptr, halfOnly);
    if (plan === null) {
      launchRsGateUp(this.host.cu, this.host.kernels, wg.smCount, wg.rsBuild(rows), g, u, halfOnly ? null : out.ptr, yh, xh, rows, wg.rsPaired(),
        wg.rsPdl());
    } else {
      launchWgmmaGateUp(this.host.cu, this.host.kernels, plan, g, u, out.ptr, yh, xh, rows);
    }
    return true;
  }

  /**
   * outs[i] = x wsᵢᵀ for q, k and v in one register-A launch (launchRsQkv) where the rows take that GEMM for the
   * three weights' tiles together and rsQkvFits holds; false: not taken (the model runs three linears).
   */
  qkv(outs: readonly DeviceRows[], x: DeviceRows, ws: readonly CudaLinear[], rows: number): boolean {
    const fused = this.qkvFused(ws, rows);
    if (fused === null || outs.length !== 3) return false;
    this.host.flush();
    for (const o of outs) this.copies.wrote(o.ptr);
    const xh = this.copies.of(x.ptr, rows, fused.ws[0].inFeatures, fused.ws[0].perm);
    launchRsQkv(this.host.cu, this.host.kernels, fused.smCount, fused.ws, outs.map((o) => o.ptr), xh, rows, fused.pdl);
    return true;
  }

  /**
   * q = rope(x wqᵀ) and the cache rows kc / vc (fp16, from the chunk's first position) = rope(x wkᵀ), x wvᵀ in one
   * register-A launch (launchRsQkvRope) where qkv would fuse them and the heads are 128 wide (the caller checks that
   * head size and that k and v are q's width); false: not taken. ropeTable gives the chunk's rope_table_f32 / _f64, issued
   * only when taken (bits: its precision, and the rotation's). k's and v's activations are not written; with qTile, nor
   * is q: it goes to qTile.at as half(q · qTile.scale), the Q tile attn_flash_wg_128 would make of it. Returns the fp16
   * x the launch reads (a HalfCopies slot), or null where not taken.
   */
  qkvRope(q: DeviceRows, x: DeviceRows, ws: readonly CudaLinear[], kc: DevicePtr, vc: DevicePtr, ropeTable: () => DevicePtr, bits: 32 | 64,
    rows: number, qTile: QTile | null = null): DevicePtr | null {
    const fused = this.qkvFused(ws, rows);
    if (fused === null || fused.ws[0].outFeatures % 128 !== 0) return null;
    this.host.flush();
    this.copies.wrote(q.ptr);
    const rope = ropeTable();
    const xh = this.copies.of(x.ptr, rows, fused.ws[0].inFeatures, fused.ws[0].perm);
    launchRsQkvRope(this.host.cu, this.host.kernels, fused.smCount, fused.ws, q.ptr, kc, vc, rope, bits, xh, rows, fused.pdl, qTile);
    return xh;
  }

  /** q, k and v's GPTQ weights where one register-A launch takes them for `rows` rows (rsQkvFits, the wave rule), else null */
  private qkvFused(ws: readonly CudaLinear[], rows: number): { ws: CudaGptq[]; smCount: number; pdl: boolean } | null {
    const wg = this.host.fusedQkv();
    if (wg === null || ws.length !== 3) return null;
    const gptq = ws.flatMap((w) => (w.kind === 'gptq' ? [w] : []));
    if (gptq.length !== 3 || !rsQkvFits(gptq, rows, wg.rsBuild(rows), wg.smCount)) return null;
    if (!wg.takesRs(rows, 3 * rsPlainTiles(gptq[0].outFeatures))) return null;
    return { ws: gptq, smCount: wg.smCount, pdl: wg.rsPdl() };
  }

  /**
   * where a producer also writes out's fp16 copy (in the launch it issues next; gathered through perm where given): a
   * slot, or null where rows that many read no copy
   */
  halfFor(out: DeviceRows, rows: number, perm: DevicePtr | null = null): DevicePtr | null {
    return this.host.gemmReadsHalf(rows) ? this.copies.reserve(out.ptr, rows, out.cols, perm) : null;
  }
}
