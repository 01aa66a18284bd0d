/** Random layers and inputs shared by the CPU kernel tests and `npm run bench:cpu`. */
import type { DenseLinearHost } from '../src/backends/backend.js';
import { packGptq, type GptqBits, type GptqLinearHost } from '../src/formats/gptq.js';
import { floatToHalf } from '../src/formats/half.js';

/** A small deterministic generator (xorshift32) so failures reproduce. */
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s / 4294967296;
  };
}

export function randomVector(n: number, rand: () => number, scale = 1): Float32Array {
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = (rand() * 2 - 1) * scale;
  return v;
}

export function randomDense(inFeatures: number, outFeatures: number, rand: () => number, bias = false): DenseLinearHost {
  const data = new Uint16Array(inFeatures * outFeatures);
  for (let i = 0; i < data.length; i++) data[i] = floatToHalf((rand() * 2 - 1) * 0.1);
  const b = bias ? Uint16Array.from({ length: outFeatures }, () => floatToHalf(rand() - 0.5)) : undefined;
  return { kind: 'dense', inFeatures, outFeatures, data, bias: b };
}

export interface RandomGptqSpec {
  readonly bits: GptqBits;
  /** -1: one group */
  readonly groupSize: number;
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly actOrder?: boolean;
  readonly bias?: boolean;
}

/** A random GPTQ layer packed the way GPTQ-for-LLaMa stores it; act-order shuffles the group of each row. */
export function randomGptq(spec: RandomGptqSpec, rand: () => number): GptqLinearHost {
  const { bits, inFeatures: inF, outFeatures: out } = spec;
  const groupSize = spec.groupSize === -1 ? inF : spec.groupSize;
  const groups = Math.ceil(inF / groupSize);
  const maxq = (1 << bits) - 1;
  const q = new Uint8Array(inF * out);
  for (let i = 0; i < q.length; i++) q[i] = Math.floor(rand() * (maxq + 1));
  const zeros = new Uint8Array(groups * out);
  for (let i = 0; i < zeros.length; i++) zeros[i] = 1 + Math.floor(rand() * maxq);
  const scales = new Float32Array(groups * out);
  for (let i = 0; i < scales.length; i++) scales[i] = (0.5 + rand()) * 0.02;
  let gIdx = Int32Array.from({ length: inF }, (_, i) => Math.floor(i / groupSize));
  if (spec.actOrder) {
    // a random permutation of the rows, groups assigned along it (as GPTQ with desc_act does)
    const perm = Int32Array.from({ length: inF }, (_, i) => i);
    for (let i = inF - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [perm[i], perm[j]] = [perm[j], perm[i]];
    }
    gIdx = new Int32Array(inF);
    for (let r = 0; r < inF; r++) gIdx[perm[r]] = Math.floor(r / groupSize);
  }
  const packed = packGptq({ bits, groupSize: spec.groupSize, inFeatures: inF, outFeatures: out, q, zeros, scales, gIdx });
  const bias = spec.bias ? Uint16Array.from({ length: out }, () => floatToHalf(rand() - 0.5)) : undefined;
  return {
    kind: 'gptq', inFeatures: inF, outFeatures: out, bits, groupSize, groups, actOrder: !!spec.actOrder,
    qweight: packed.qweight, qzeros: packed.qzeros, scales: packed.scales, gIdx: packed.gIdx, bias,
  };
}

/**
 * A random 2/4/8-bit GPTQ layer in file order (no act-order), filled word by word: fast enough
 * for LLaMA-7B/13B shapes, where packing value by value would dominate the bench's run time.
 */
export function randomPackedGptq(bits: 2 | 4 | 8, groupSize: number, inFeatures: number, outFeatures: number, rand: () => number): GptqLinearHost {
  const gs = groupSize === -1 ? inFeatures : groupSize;
  const groups = Math.ceil(inFeatures / gs);
  const qweight = new Int32Array((inFeatures * bits / 32) * outFeatures);
  for (let i = 0; i < qweight.length; i++) qweight[i] = (rand() * 4294967296) | 0;
  const qzeros = new Int32Array(groups * (outFeatures * bits / 32));
  for (let i = 0; i < qzeros.length; i++) qzeros[i] = (rand() * 4294967296) | 0;
  const scales = new Uint16Array(groups * outFeatures);
  for (let i = 0; i < scales.length; i++) scales[i] = floatToHalf((0.5 + rand()) * 0.01);
  const gIdx = Int32Array.from({ length: inFeatures }, (_, i) => Math.floor(i / gs));
  return { kind: 'gptq', inFeatures, outFeatures, bits, groupSize: gs, groups, actOrder: false, qweight, qzeros, scales, gIdx };
}
