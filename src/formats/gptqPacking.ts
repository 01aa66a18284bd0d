import { QllamaError } from '../errors.js';
import { floatToHalf, halfToFloat } from './half.js';
import type { GptqBits, GptqLinearHost } from './gptqTypes.js';

/**
 * GPTQ-for-LLaMa v1 bit packing (= AutoGPTQ checkpoint_format "gptq").
 *
 * Both packed tensors are little-endian bitstreams of `bits`-bit values in int32 words, LSB
 * first: value k sits at bits [k·bits, k·bits + bits) of the stream. For 2/4/8 bits values never
 * straddle a word; for 3 bits GPTQ-for-LLaMa's `QuantLinear.pack` puts 32 values in 3 words,
 * value 10 split 2+1 bits across words 0/1 and value 21 split 1+2 across words 1/2 — which is
 * exactly this continuous stream, so one rule covers every width.
 *   qweight [I·bits/32, O]: one stream per output column, running down the rows (input dim).
 *   qzeros  [G, O·bits/32]: one stream per group row, running along the output dim; each zero
 *           point is stored minus one (the v1 quirk: dequantize adds the 1 back).
 */

/** packGptq was given values that cannot be stored (out of range, wrong lengths). */
export class GptqPackError extends QllamaError {}

/** Value `index` of the stream whose word w is at `words[base + w·stride]`. */
export function getPacked(words: Int32Array, base: number, stride: number, index: number, bits: number): number {
  const bit = index * bits;
  const w = bit >>> 5;
  const shift = bit & 31;
  let v = words[base + w * stride] >>> shift;
  if (shift + bits > 32) v |= words[base + (w + 1) * stride] << (32 - shift); // straddles (3-bit only)
  return v & ((1 << bits) - 1);
}

/** ORs `value` into the stream (the words must start zeroed). */
export function setPacked(words: Int32Array, base: number, stride: number, index: number, bits: number, value: number): void {
  const bit = index * bits;
  const w = bit >>> 5;
  const shift = bit & 31;
  words[base + w * stride] |= value << shift;
  if (shift + bits > 32) words[base + (w + 1) * stride] |= value >>> (32 - shift);
}

/** Quantized values q `[in, out]`. */
export function unpackQweight(layer: GptqLinearHost): Uint8Array {
  const { inFeatures: inF, outFeatures: out, bits, qweight } = layer;
  const q = new Uint8Array(inF * out); // [in, out]
  for (let i = 0; i < inF; i++) {
    for (let o = 0; o < out; o++) q[i * out + o] = getPacked(qweight, o, out, i, bits);
  }
  return q;
}

/** Stored zero points `[groups, out]` as in the file (true zero − 1, masked to `bits`). */
export function unpackQzeros(layer: GptqLinearHost): Uint8Array {
  const { groups, outFeatures: out, bits, qzeros } = layer;
  const cols = (out * bits) / 32;
  const z = new Uint8Array(groups * out); // [groups, out]
  for (let g = 0; g < groups; g++) {
    for (let o = 0; o < out; o++) z[g * out + o] = getPacked(qzeros, g * cols, 1, o, bits);
  }
  return z;
}

/** W `[out, in]` f32: W[o, i] = scales[g, o] · (q[i, o] − (z[g, o] + 1)), g = gIdx[i]. */
export function dequantizeGptq(layer: GptqLinearHost): Float32Array {
  const { inFeatures: inF, outFeatures: out, gIdx } = layer;
  const q = unpackQweight(layer); // [in, out]
  const z = unpackQzeros(layer); // [groups, out]
  const s = new Float32Array(layer.scales.length); // [groups, out]
  for (let k = 0; k < s.length; k++) s[k] = halfToFloat(layer.scales[k]);
  const w = new Float32Array(out * inF); // [out, in]
  for (let i = 0; i < inF; i++) {
    const g = gIdx[i] * out;
    for (let o = 0; o < out; o++) w[o * inF + i] = s[g + o] * (q[i * out + o] - (z[g + o] + 1));
  }
  return w;
}

export interface PackInput {
  readonly bits: GptqBits;
  /** rows per group; -1 (or inFeatures) for one group */
  readonly groupSize: number;
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** quantized values `[in, out]`, each < 2^bits */
  readonly q: Uint8Array;
  /**
   * true zero points `[groups, out]`, each in [1, 2^bits − 1]: v1 stores zero − 1 in `bits` bits,
   * so a zero of 0 would come back as 2^bits (GPTQ-for-LLaMa silently corrupts it; we refuse).
   * Optional when `sym`: then every zero is 2^(bits−1), as GPTQ's symmetric quantizer sets it.
   */
  readonly zeros?: Uint8Array;
  /** scales `[groups, out]`, stored rounded to fp16 */
  readonly scales: Float32Array;
  /** group of each input row `[in]` (act-order); default i / groupSize */
  readonly gIdx?: Int32Array;
  readonly sym?: boolean;
}

/** Packed tensors, ready to write as `<prefix>.qweight|qzeros|scales|g_idx`. */
export interface PackedGptq {
  readonly qweight: Int32Array; // [in·bits/32, out]
  readonly qzeros: Int32Array; // [groups, out·bits/32]
  readonly scales: Uint16Array; // [groups, out] fp16 bits
  readonly gIdx: Int32Array; // [in]
}

/**
 * The inverse of unpacking: GPTQ-for-LLaMa's `QuantLinear.pack` layout. `toHalf` rounds the
 * scales to fp16 (default: round to nearest even, as torch's `.half()`).
 */
export function packGptq(input: PackInput, toHalf: (f: number) => number = floatToHalf): PackedGptq {
  const { bits, inFeatures: inF, outFeatures: out } = input;
  const bad = (what: string): GptqPackError => new GptqPackError(`cannot pack a ${inF}×${out} ${bits}-bit GPTQ layer: ${what}`);
  if (![2, 3, 4, 8].includes(bits)) throw bad('bits must be 2, 3, 4 or 8');
  if (!Number.isInteger(inF) || !Number.isInteger(out) || inF <= 0 || out <= 0) throw bad('dimensions must be positive integers');
  if ((inF * bits) % 32 !== 0 || (out * bits) % 32 !== 0) throw bad('both dimensions × bits must fill whole int32 words (multiples of 32 features)');
  const groupSize = input.groupSize === -1 ? inF : input.groupSize;
  if (!Number.isInteger(groupSize) || groupSize <= 0) throw bad(`group size ${input.groupSize} must be -1 or a positive integer`);
  const groups = Math.ceil(inF / groupSize);
  const maxq = (1 << bits) - 1;
  if (input.q.length !== inF * out) throw bad(`q has ${input.q.length} values, expected in·out = ${inF * out}`);
  if (input.scales.length !== groups * out) throw bad(`scales has ${input.scales.length} values, expected groups·out = ${groups * out}`);
  const gIdx = input.gIdx ? Int32Array.from(input.gIdx) : Int32Array.from({ length: inF }, (_, i) => Math.floor(i / groupSize));
  if (gIdx.length !== inF) throw bad(`gIdx has ${gIdx.length} entries, expected ${inF}`);
  for (let i = 0; i < inF; i++) if (gIdx[i] < 0 || gIdx[i] >= groups) throw bad(`gIdx[${i}] = ${gIdx[i]} is outside [0, ${groups})`);

  const symZero = 1 << (bits - 1);
  const zeros = input.zeros ?? (input.sym ? new Uint8Array(groups * out).fill(symZero) : undefined);
  if (!zeros) throw bad('zeros are required unless sym is true');
  if (zeros.length !== groups * out) throw bad(`zeros has ${zeros.length} values, expected groups·out = ${groups * out}`);

  const qweight = new Int32Array((inF * bits / 32) * out);
  for (let i = 0; i < inF; i++) {
    for (let o = 0; o < out; o++) {
      const v = input.q[i * out + o];
      if (v > maxq) throw bad(`q[${i}, ${o}] = ${v} does not fit in ${bits} bits`);
      setPacked(qweight, o, out, i, bits, v);
    }
  }
  const cols = (out * bits) / 32;
  const qzeros = new Int32Array(groups * cols);
  for (let g = 0; g < groups; g++) {
    for (let o = 0; o < out; o++) {
      const z = zeros[g * out + o];
      if (z < 1 || z > maxq) throw bad(`zero point [${g}, ${o}] = ${z} is outside [1, ${maxq}]: the v1 format stores zero − 1, so clamp zeros to at least 1`);
      if (input.sym && z !== symZero) throw bad(`sym is true but zero point [${g}, ${o}] = ${z}, not ${symZero}`);
      setPacked(qzeros, g * cols, 1, o, bits, z - 1);
    }
  }
  const scales = new Uint16Array(groups * out);
  for (let k = 0; k < scales.length; k++) scales[k] = toHalf(input.scales[k]);
  return { qweight, qzeros, scales, gIdx };
}
