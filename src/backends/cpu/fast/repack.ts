import type { DenseLinearHost } from '../../backend.js';
import type { GptqLinearHost } from '../../../formats/gptqTypes.js';
import { unpackQweight, unpackQzeros } from '../../../formats/gptq.js';
import { groupOrder } from '../../../formats/actOrder.js';
import { HALF_TO_FLOAT } from '../kernels/half.js';
import { fieldInput, MAX_XBLOCK, type QuantBits } from './kernels.js';
import type { WasmEngine } from './engine.js';

/** A dense layer in wasm memory: W [N/8][K][8] f32. */
export interface FastDense {
  readonly kind: 'fast-dense';
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly w: number;
  /** byte offset of the f32 bias, 0 for none */
  readonly bias: number;
}

/**
 * A GPTQ layer in wasm memory, repacked for the kernels: Q [N/8][K/perWord][8] words (fields
 * pair-interleaved, see kernels.ts), S and NZ [N/8][G][8] f32 (NZ = −(zero+1)·scale). Act-order layers have their input rows sorted by group
 * once here, so every group is a contiguous run of `rowsPerGroup` packed rows; `perm[j]` is the
 * original input index of row j and activations are permuted to match at run time.
 * 3-bit values are stored as 4-bit (one kernel, 33% more bytes than the 3-bit file).
 */
export interface FastGptq {
  readonly kind: 'fast-gptq';
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly bits: QuantBits;
  readonly groups: number;
  /** packed rows (chunks of 32/bits inputs) per group */
  readonly rowsPerGroup: number;
  /** inputs per int8 quantization block of x in the int8 GEMV (divides the group, ≤ 128) */
  readonly xBlock: number;
  readonly q: number;
  readonly scales: number;
  readonly negzs: number;
  readonly bias: number;
  readonly perm?: Int32Array;
}

function uploadBias(e: WasmEngine, bias: Uint16Array | undefined, n: number): number {
  if (!bias) return 0;
  const ptr = e.alloc(n * 4);
  const v = e.f32(ptr, n);
  for (let i = 0; i < n; i++) v[i] = HALF_TO_FLOAT[bias[i]];
  return ptr;
}

/** null when the shape does not suit the kernels (then the plain path keeps the layer). */
export function repackDense(e: WasmEngine, l: DenseLinearHost): FastDense | null {
  const { inFeatures: K, outFeatures: N, data } = l;
  if (N % 8 !== 0) return null;
  const ptr = e.alloc(N * K * 4);
  const w = e.f32(ptr, N * K);
  for (let o = 0; o < N; o++) {
    const src = o * K;
    const dst = (o >> 3) * K * 8 + (o & 7);
    for (let k = 0; k < K; k++) w[dst + k * 8] = HALF_TO_FLOAT[data[src + k]];
  }
  return { kind: 'fast-dense', inFeatures: K, outFeatures: N, w: ptr, bias: uploadBias(e, l.bias, N) };
}

export function repackGptq(e: WasmEngine, l: GptqLinearHost): FastGptq | null {
  const { inFeatures: K, outFeatures: N, gIdx } = l;
  const bits: QuantBits = l.bits === 3 ? 4 : l.bits;
  const perWord = 32 / bits;
  if (N % 8 !== 0 || K % perWord !== 0) return null;
  const counts = new Int32Array(l.groups);
  for (let i = 0; i < K; i++) {
    if (gIdx[i] < 0 || gIdx[i] >= l.groups) return null;
    counts[gIdx[i]]++;
  }
  const perGroup = counts[0];
  if (perGroup % perWord !== 0 || counts.some((c) => c !== perGroup)) return null;
  // rows sorted by group (stable, formats/actOrder.ts): the identity unless act-order
  let sorted = true;
  for (let i = 1; i < K; i++) if (gIdx[i] < gIdx[i - 1]) sorted = false;
  const perm = sorted ? undefined : groupOrder(gIdx);
  const rowsPerGroup = perGroup / perWord;
  const groups = l.groups;

  const P = K / perWord;
  const qPtr = e.alloc(N * P * 4);
  const q = e.u32(qPtr, N * P);
  if (!perm && bits === l.bits) {
    // 2/4/8-bit in file order: each qweight word packs the perWord inputs of one chunk and column
    // in order; move its fields to the pair-interleaved order, 16 bits at a time by table
    const [lo, hi] = fieldTables(bits);
    const qw = l.qweight;
    for (let nb = 0; nb < N / 8; nb++) {
      for (let pr = 0; pr < P; pr++) {
        const dst = (nb * P + pr) * 8, src = pr * N + nb * 8;
        for (let c = 0; c < 8; c++) {
          const v = qw[src + c];
          q[dst + c] = (lo[v & 0xffff] | hi[(v >>> 16) & 0xffff]) >>> 0;
        }
      }
    }
  }
  const qv = perm || bits !== l.bits ? unpackQweight(l) : new Uint8Array(0); // [K, N] values
  const rowOf = Int32Array.from({ length: perWord }, (_, j) => fieldInput(bits, j));
  for (let nb = 0; qv.length > 0 && nb < N / 8; nb++) {
    for (let pr = 0; pr < P; pr++) {
      const dst = (nb * P + pr) * 8;
      for (let c = 0; c < 8; c++) {
        const o = nb * 8 + c;
        let word = 0;
        for (let j = 0; j < perWord; j++) {
          const row = pr * perWord + rowOf[j];
          const i = perm ? perm[row] : row;
          word |= qv[i * N + o] << (j * bits);
        }
        q[dst + c] = word >>> 0;
      }
    }
  }
  const z = unpackQzeros(l); // stored zeros [G, N]
  const sPtr = e.alloc(N * groups * 4), zPtr = e.alloc(N * groups * 4);
  const s = e.f32(sPtr, N * groups), nz = e.f32(zPtr, N * groups);
  for (let g = 0; g < groups; g++) {
    for (let o = 0; o < N; o++) {
      const dst = ((o >> 3) * groups + g) * 8 + (o & 7);
      const scale = HALF_TO_FLOAT[l.scales[g * N + o]];
      s[dst] = scale;
      nz[dst] = -(z[g * N + o] + 1) * scale;
    }
  }
  return {
    kind: 'fast-gptq', inFeatures: K, outFeatures: N, bits, groups, rowsPerGroup, xBlock: xBlock(perGroup, perWord),
    q: qPtr, scales: sPtr, negzs: zPtr, bias: uploadBias(e, l.bias, N), perm,
  };
}

/** The largest multiple of `chunk` that divides `perGroup` and is at most MAX_XBLOCK. */
function xBlock(perGroup: number, chunk: number): number {
  for (let b = Math.min(perGroup, MAX_XBLOCK); b > chunk; b--) if (perGroup % b === 0 && b % chunk === 0) return b;
  return chunk;
}

const FIELD_TABLES = new Map<QuantBits, [Uint32Array, Uint32Array]>();
/**
 * For the low and high 16 bits of a file-order word: the same fields placed where the repacked
 * word keeps them (field f of the file word is input f; input i goes to the field j with
 * fieldInput(bits, j) = i).
 */
function fieldTables(bits: QuantBits): [Uint32Array, Uint32Array] {
  let t = FIELD_TABLES.get(bits);
  if (t) return t;
  const perWord = 32 / bits, half = perWord / 2, mask = (1 << bits) - 1;
  const dest = new Int32Array(perWord);
  for (let j = 0; j < perWord; j++) dest[fieldInput(bits, j)] = j;
  t = [new Uint32Array(65536), new Uint32Array(65536)];
  for (let h = 0; h < 2; h++) {
    for (let v = 0; v < 65536; v++) {
      let word = 0;
      for (let i = 0; i < half; i++) word |= ((v >>> (i * bits)) & mask) << (dest[h * half + i] * bits);
      t[h][v] = word >>> 0;
    }
  }
  FIELD_TABLES.set(bits, t);
  return t;
}
