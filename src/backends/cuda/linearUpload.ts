/**
 * Upload of linear layers. GPTQ 4-bit layers whose shapes suit the fast GEMV keep GPTQ's own
 * [K/8, N] packing (a lane's 4 adjacent columns are one 16-byte load); act-order layers get their
 * rows reordered on the GPU so each group's rows are contiguous, and the kernels read x through
 * the permutation instead (gathered, or written in that order by its producer: gemvBatch.ts).
 * Equal permutations (q/k/v, gate/up of a GPTQ-for-LLaMa act-order file) share one device buffer, so
 * the batch sees by pointer that one permuted x serves them all.
 * 2- and 3-bit layers of those shapes are widened into the same layout (widensToQ4); 8-bit layers keep
 * their [K/4, N] packing with rows reordered the same way (the q8 layout, gemv_q8.cu).
 * Everything else keeps its packing and its g_idx for the generic kernels.
 *
 * Caller-arranged orders (LinearUploadOptions, src/backends/backend.ts):
 *   outputOrder: the outputs are permuted at upload, on the device (kernels/upload_order.cu): qweight's
 *     and scales' columns (qweight whole words: one output per column), qzeros' values within their rows;
 *     the bias (and 3-bit zeros, whose values straddle words) on the host.
 *   inputInGroupOrder: x arrives in the group order already; the rows are reordered as for act-order
 *     but no perm is kept, so every kernel reads x linearly (the generic layout gets its rows and
 *     g_idx permuted on the host instead).
 */
import { createHash } from 'node:crypto';
import type { DenseLinearHost, LinearUploadOptions, LinearWeight } from '../backend.js';
import {
  checkPermutation, gatherColumns, gatherPackedInRows, gatherRows, groupContiguousPerm, groupOrder, permuteGptqInputs,
} from '../../formats/actOrder.js';
import type { GptqBits, GptqLinearHost } from '../../formats/gptqTypes.js';
import type { CuStream, DevicePtr, Dim3, Driver } from './driver.js';
import { i32, ptr } from './kernelArgs.js';
import type { DeviceMemory } from './memory.js';
import type { KernelModule } from './module.js';

export { groupContiguousPerm } from '../../formats/actOrder.js';

export interface CudaDense extends LinearWeight {
  readonly kind: 'dense';
  readonly w: DevicePtr; // [N, K] fp16
  readonly bias: DevicePtr | null; // [N] fp16
}

export interface CudaGptq extends LinearWeight {
  readonly kind: 'gptq';
  /** bits per weight of the uploaded layout: 4 for 2- and 3-bit layers widened to the q4 layout (widensToQ4) */
  readonly bits: GptqBits;
  /** bits per weight in the file */
  readonly storedBits: GptqBits;
  readonly groupSize: number;
  /**
   * 'q4': the int4 kernels' layout (rows group-contiguous; 2- and 3-bit layers widened into it); 'q8': 8-bit
   * GPTQ packing with rows group-contiguous (gemv_q8); 'generic': GPTQ packing with g_idx
   */
  readonly layout: 'q4' | 'q8' | 'generic';
  /** packed rows per group within the fast kernel's 16-row slice (q4 layout only) */
  readonly rowsPerGroup: 16 | 8 | 4;
  readonly qweight: DevicePtr;
  readonly scales: DevicePtr;
  readonly qzeros: DevicePtr;
  /** [K] group of each row (generic layout), else null (group = k / groupSize) */
  readonly gIdx: DevicePtr | null;
  /** [K] x index of each reordered row (act-order in the q4 layout), else null */
  readonly perm: DevicePtr | null;
  /** [K] inverse of perm (row of each x index), for producers that write x already permuted; else null */
  readonly invPerm: DevicePtr | null;
  readonly bias: DevicePtr | null;
}

export type CudaLinear = CudaDense | CudaGptq;

/** Act-order permutations uploaded by one backend, by content hash: the permutation and its inverse. */
export type PermCache = Map<string, { readonly perm: DevicePtr; readonly inv: DevicePtr }>;

interface UploadContext {
  readonly cu: Driver;
  readonly mem: DeviceMemory;
  readonly kernels: KernelModule;
  readonly stream: CuStream;
  /** equal permutations share one device buffer where given */
  readonly perms?: PermCache;
}

export function uploadArray(ctx: UploadContext, data: ArrayBufferView): DevicePtr {
  const p = ctx.mem.alloc(data.byteLength);
  ctx.cu.copyHtoD(p, data, data.byteLength, ctx.stream);
  return p;
}

export function uploadDense(ctx: UploadContext, host: DenseLinearHost, options: LinearUploadOptions = {}): CudaDense {
  if (options.inputInGroupOrder) throw new RangeError('uploadLinear: inputInGroupOrder applies to GPTQ weights only (a dense weight has no groups)');
  const order = options.outputOrder;
  if (order) checkPermutation(order, host.outFeatures, 'uploadLinear outputOrder');
  // W [N, K]: an output is a row, so the permutation is a row gather (one copy per row)
  const w = order ? { ...host, data: gatherRows(host.data, host.inFeatures, order), bias: host.bias && gatherColumns(host.bias, 1, host.outFeatures, order) } : host;
  return {
    kind: 'dense', inFeatures: w.inFeatures, outFeatures: w.outFeatures,
    w: uploadArray(ctx, w.data), bias: w.bias ? uploadArray(ctx, w.bias) : null,
  };
}

/** packed rows per group of the q4 layout for a layer of `bits` (after widening) and these shapes, or null: the generic kernels */
function fastRowsPerGroup(w: GptqLinearHost, bits: number): 16 | 8 | 4 | null {
  if (bits !== 4 || w.inFeatures % 128 !== 0 || w.outFeatures % 8 !== 0) return null;
  if (w.groupSize % 128 === 0) return 16;
  if (w.groupSize === 64) return 8;
  if (w.groupSize === 32) return 4;
  return null;
}

/** Whether an 8-bit layer takes the q8 layout (gemv_q8.cu: 128-value K slices, 32-value units inside one group, 4-column lanes). */
function fastQ8(w: GptqLinearHost): boolean {
  return w.bits === 8 && w.inFeatures % 128 === 0 && w.outFeatures % 8 === 0 && w.groupSize % 32 === 0;
}

/**
 * 2- and 3-bit layers whose shapes suit the q4 layout are widened to 4-bit fields at upload (gptq_widen_q4,
 * upload_order.cu): the values, zeros and scales are unchanged, and every 4-bit kernel runs them (the
 * one-token GEMV with its epilogues, the few-rows kernels, the tensor-core prefill) instead of the generic
 * ones, which read one scalar per weight. The cost: 4 bits read per weight instead of 3 or 2, and as much
 * device memory (13B 3-bit: ~6.9 GB of weights instead of ~5.3).
 */
function widensToQ4(w: GptqLinearHost): boolean {
  return (w.bits === 2 || w.bits === 3) && fastRowsPerGroup(w, 4) !== null;
}

export function uploadGptq(ctx: UploadContext, host: GptqLinearHost, options: LinearUploadOptions = {}): CudaGptq {
  const { outFeatures: N, groups } = host;
  const widen = widensToQ4(host);
  const storedBits = host.bits;
  const bits = widen ? 4 : storedBits; // the uploaded layout's
  const order = options.outputOrder ?? null;
  if (order) checkPermutation(order, N, 'uploadLinear outputOrder');
  // device copies that stop mattering once the kernels reading them have run: freed after one sync
  const scratch: DevicePtr[] = [];
  /** a buffer of `bytes` that `fill(dst, src)` writes from `src`, which becomes scratch */
  const from = (src: DevicePtr, bytes: number, fill: (dst: DevicePtr, src: DevicePtr) => void): DevicePtr => {
    const dst = ctx.mem.alloc(bytes);
    fill(dst, src);
    scratch.push(src);
    return dst;
  };
  const gridN = (n: number, rows: number): Dim3 => ({ x: Math.ceil(n / 256), y: rows });
  const cols = order ? uploadArray(ctx, order) : null;
  if (cols !== null) scratch.push(cols);

  // outputs in `order`: scales by column and qzeros value by value on the device (3-bit zeros, which
  // straddle words, on the host), bias on the host; qweight's columns below
  let scales = uploadArray(ctx, host.scales);
  let qzeros = uploadArray(ctx, order && bits === 3 ? gatherPackedInRows(host.qzeros, groups, N, bits, order) : host.qzeros);
  const qzBytes = groups * ((N * bits) / 32) * 4; // the uploaded layout's (widened: 4-bit zeros)
  if (widen) {
    qzeros = from(qzeros, qzBytes, (d, s) =>
      ctx.kernels.launch('gptq_widen_zeros_q4', gridN(N / 8, groups), { x: 256 }, [ptr(d), ptr(s), i32(N), i32(storedBits)]));
  }
  if (cols !== null) {
    scales = from(scales, host.scales.byteLength, (d, s) => ctx.kernels.launch('u16_gather_cols', gridN(N, groups), { x: 256 }, [ptr(d), ptr(s), ptr(cols), i32(N)]));
    if (bits !== 3) {
      qzeros = from(qzeros, qzBytes, (d, s) =>
        ctx.kernels.launch('packed_gather_cols', gridN((N * bits) / 32, groups), { x: 256 }, [ptr(d), ptr(s), ptr(cols), i32(N), i32(bits)]));
    }
  }
  const bias = host.bias ? uploadArray(ctx, order ? gatherColumns(host.bias, 1, N, order) : host.bias) : null;
  const base = { kind: 'gptq' as const, inFeatures: host.inFeatures, outFeatures: N, bits, storedBits, groupSize: host.groupSize, scales, qzeros, bias };

  const rpg = fastRowsPerGroup(host, bits);
  const trivial = isTrivial(host.gIdx, host.groupSize);
  const fast = rpg !== null || fastQ8(host);
  const perm = !fast || trivial ? null : groupContiguousPerm(host.gIdx, host.groupSize);
  // q4 or q8: rows reordered for act-order
  const fastLayout = fast && (trivial || perm !== null);
  // generic layout: x in the group order means the rows (and g_idx) follow it, permuted on the host
  const w = !fastLayout && options.inputInGroupOrder && !trivial ? permuteGptqInputs(host, groupOrder(host.gIdx)) : host;
  let qweight = uploadArray(ctx, w.qweight);
  const qwBytes = (w.inFeatures * bits / 32) * N * 4;
  if (widen) {
    qweight = from(qweight, qwBytes, (d, s) =>
      ctx.kernels.launch('gptq_widen_q4', gridN(N, w.inFeatures / 8), { x: 256 }, [ptr(d), ptr(s), i32(N), i32(storedBits)]));
  }
  if (cols !== null) {
    qweight = from(qweight, qwBytes, (d, s) => ctx.kernels.launch('u32_gather_cols', gridN(N, qwBytes / 4 / N), { x: 256 }, [ptr(d), ptr(s), ptr(cols), i32(N)]));
  }
  // q4 / q8 act-order: rows reordered so each group's are contiguous; the kernels read x through perm, or
  // linearly when its producer already wrote x in the group order (= perm)
  const kept = fastLayout && perm !== null && !options.inputInGroupOrder ? uploadPerm(ctx, perm) : null;
  if (fastLayout && perm !== null) {
    const permDev = kept?.perm ?? uploadArray(ctx, perm);
    if (kept === null) scratch.push(permDev);
    qweight = from(qweight, qwBytes, (d, s) => rpg !== null
      ? ctx.kernels.launch('q4_reorder_rows', gridN(N, w.inFeatures / 8), { x: 256 }, [ptr(d), ptr(s), ptr(permDev), i32(N)])
      : ctx.kernels.launch('q8_reorder_rows', gridN(N, w.inFeatures / 4), { x: 256 }, [ptr(d), ptr(s), ptr(permDev), i32(N)]));
  }
  if (scratch.length > 0) {
    ctx.cu.streamSynchronize(ctx.stream);
    for (const p of scratch) ctx.mem.free(p);
  }
  if (fastLayout) return { ...base, layout: rpg !== null ? 'q4' : 'q8', rowsPerGroup: rpg ?? 16, qweight, gIdx: null, perm: kept?.perm ?? null, invPerm: kept?.inv ?? null };
  return { ...base, layout: 'generic', rowsPerGroup: 16, qweight, gIdx: uploadArray(ctx, w.gIdx), perm: null, invPerm: null };
}

/** perm and its inverse on the device; once per distinct permutation where ctx.perms is given. */
function uploadPerm(ctx: UploadContext, perm: Int32Array): { readonly perm: DevicePtr; readonly inv: DevicePtr } {
  const key = ctx.perms ? createHash('sha256').update(new Uint8Array(perm.buffer, perm.byteOffset, perm.byteLength)).digest('hex') : '';
  const known = ctx.perms?.get(key);
  if (known) return known;
  const inv = new Int32Array(perm.length);
  perm.forEach((k, i) => { inv[k] = i; });
  const dev = { perm: uploadArray(ctx, perm), inv: uploadArray(ctx, inv) };
  ctx.perms?.set(key, dev);
  return dev;
}

function isTrivial(gIdx: Int32Array, groupSize: number): boolean {
  for (let k = 0; k < gIdx.length; k++) if (gIdx[k] !== Math.floor(k / groupSize)) return false;
  return true;
}
