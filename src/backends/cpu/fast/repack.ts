import type { DenseLinearHost } from '../../backend.js';
import type { GptqLinearHost } from '../../../formats/gptqTypes.js';
import { unpackQweight, unpackQzeros } from '../../../formats/gptq.js';
import { HALF_TO_FLOAT } from '../kernels/half.js';
import type { QuantBits } from './kernels.js';
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
 * A GPTQ layer in wasm memory, repacked for the kernels: Q [N/8][K/perWord][8] words, S and NZ
 * [N/8][G][8] f32 (NZ = −zero·scale). Act-order layers have their input rows sorted by group
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
  readonly rowsPerGroup: number;
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
  // rows sorted by group (stable): the identity unless act-order
  let perm: Int32Array | undefined;
  let sorted = true;
  for (let i = 1; i < K; i++) if (gIdx[i] < gIdx[i - 1]) sorted = false;
  if (!sorted) {
    perm = Int32Array.from({ length: K }, (_, i) => i).sort((a, b) => gIdx[a] - gIdx[b] || a - b);
  }
  const counts = new Int32Array(l.groups);
  for (let i = 0; i < K; i++) {
    if (gIdx[i] < 0 || gIdx[i] >= l.groups) return null;
    counts[gIdx[i]]++;
  }
  const perGroup = counts[0];
  if (perGroup % perWord !== 0 || counts.some((c) => c !== perGroup)) return null;
  const rowsPerGroup = perGroup / perWord;
  const groups = l.groups;

  const P = K / perWord;
  const qPtr = e.alloc(N * P * 4);
  const q = e.u32(qPtr, N * P);
  if (!perm && bits === l.bits) {
    // 2/4/8-bit in file order: each qweight word already packs perWord inputs of one column
    const qw = l.qweight;
    for (let nb = 0; nb < N / 8; nb++) {
      for (let pr = 0; pr < P; pr++) {
        const dst = (nb * P + pr) * 8, src = pr * N + nb * 8;
        for (let c = 0; c < 8; c++) q[dst + c] = qw[src + c];
      }
    }
  }
  const qv = perm || bits !== l.bits ? unpackQweight(l) : new Uint8Array(0); // [K, N] values
  for (let nb = 0; qv.length > 0 && nb < N / 8; nb++) {
    for (let pr = 0; pr < P; pr++) {
      const dst = (nb * P + pr) * 8;
      for (let c = 0; c < 8; c++) {
        const o = nb * 8 + c;
        let word = 0;
        for (let j = 0; j < perWord; j++) {
          const row = pr * perWord + j;
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
    kind: 'fast-gptq', inFeatures: K, outFeatures: N, bits, groups, rowsPerGroup,
    q: qPtr, scales: sPtr, negzs: zPtr, bias: uploadBias(e, l.bias, N), perm,
  };
}
