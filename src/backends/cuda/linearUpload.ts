/**
 * Upload of linear layers. GPTQ 4-bit layers whose shapes suit the fast GEMV keep GPTQ's own
 * [K/8, N] packing (a lane's 4 adjacent columns are one 16-byte load); act-order layers get their
 * rows reordered on the GPU so each group's rows are contiguous, and the kernels read x through
 * the permutation instead (gathered, or written in that order by its producer: gemvBatch.ts).
 * Equal permutations (q/k/v, gate/up of a GPTQ-for-LLaMa act-order file) share one device buffer, so
 * the batch sees by pointer that one permuted x serves them all.
 * Everything else keeps its packing and its g_idx for the generic kernels.
 */
import { createHash } from 'node:crypto';
import type { DenseLinearHost, LinearWeight } from '../backend.js';
import type { GptqBits, GptqLinearHost } from '../../formats/gptqTypes.js';
import type { DevicePtr, Driver, CuStream } from './driver.js';
import { i32, ptr } from './kernelArgs.js';
import type { DeviceMemory } from './memory.js';
import type { KernelModule } from './module.js';

export interface CudaDense extends LinearWeight {
  readonly kind: 'dense';
  readonly w: DevicePtr; // [N, K] fp16
  readonly bias: DevicePtr | null; // [N] fp16
}

export interface CudaGptq extends LinearWeight {
  readonly kind: 'gptq';
  readonly bits: GptqBits;
  readonly groupSize: number;
  /** 'q4': fast int4 GEMV layout (rows group-contiguous); 'generic': GPTQ packing with g_idx */
  readonly layout: 'q4' | 'generic';
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

export function uploadDense(ctx: UploadContext, w: DenseLinearHost): CudaDense {
  return {
    kind: 'dense', inFeatures: w.inFeatures, outFeatures: w.outFeatures,
    w: uploadArray(ctx, w.data), bias: w.bias ? uploadArray(ctx, w.bias) : null,
  };
}

/**
 * Rows sorted by group (stable), when every group then holds exactly groupSize consecutive rows,
 * which GPTQ's act-order produces; null when the groups are uneven.
 */
export function groupContiguousPerm(gIdx: Int32Array, groupSize: number): Int32Array | null {
  const K = gIdx.length;
  const counts = new Int32Array(Math.ceil(K / groupSize) + 1);
  for (let k = 0; k < K; k++) {
    const g = gIdx[k];
    if (g < 0 || g >= counts.length - 1) return null;
    counts[g + 1]++;
  }
  for (let g = 1; g < counts.length; g++) counts[g] += counts[g - 1];
  const perm = new Int32Array(K);
  const next = counts.slice(0, -1);
  for (let k = 0; k < K; k++) perm[next[gIdx[k]]++] = k;
  for (let i = 0; i < K; i++) if (gIdx[perm[i]] !== Math.floor(i / groupSize)) return null;
  return perm;
}

function fastRowsPerGroup(w: GptqLinearHost): 16 | 8 | 4 | null {
  if (w.bits !== 4 || w.inFeatures % 128 !== 0 || w.outFeatures % 8 !== 0) return null;
  if (w.groupSize % 128 === 0) return 16;
  if (w.groupSize === 64) return 8;
  if (w.groupSize === 32) return 4;
  return null;
}

export function uploadGptq(ctx: UploadContext, w: GptqLinearHost): CudaGptq {
  const base = {
    kind: 'gptq' as const, inFeatures: w.inFeatures, outFeatures: w.outFeatures, bits: w.bits, groupSize: w.groupSize,
    scales: uploadArray(ctx, w.scales), qzeros: uploadArray(ctx, w.qzeros), bias: w.bias ? uploadArray(ctx, w.bias) : null,
  };
  const rpg = fastRowsPerGroup(w);
  const trivial = isTrivial(w.gIdx, w.groupSize);
  const perm = rpg === null || trivial ? null : groupContiguousPerm(w.gIdx, w.groupSize);
  if (rpg !== null && (trivial || perm !== null)) {
    if (perm === null) {
      return { ...base, layout: 'q4', rowsPerGroup: rpg, qweight: uploadArray(ctx, w.qweight), gIdx: null, perm: null, invPerm: null };
    }
    const { perm: permDev, inv: invDev } = uploadPerm(ctx, perm);
    const src = uploadArray(ctx, w.qweight);
    const dst = ctx.mem.alloc(w.qweight.byteLength);
    const N = w.outFeatures;
    ctx.kernels.launch('q4_reorder_rows', { x: Math.ceil(N / 256), y: w.inFeatures / 8 }, { x: 256 }, [ptr(dst), ptr(src), ptr(permDev), i32(N)]);
    ctx.cu.streamSynchronize(ctx.stream); // the source is freed next
    ctx.mem.free(src);
    return { ...base, layout: 'q4', rowsPerGroup: rpg, qweight: dst, gIdx: null, perm: permDev, invPerm: invDev };
  }
  return { ...base, layout: 'generic', rowsPerGroup: 16, qweight: uploadArray(ctx, w.qweight), gIdx: uploadArray(ctx, w.gIdx), perm: null, invPerm: null };
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
