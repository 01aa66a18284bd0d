import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { QllamaError } from '../errors.js';
import { asInt32, asUint16, halfToFloat } from './safetensors.js';
import type { GptqBits, GptqLinearHost } from './gptqTypes.js';
import type { WeightStore } from './weightStore.js';

export type { GptqBits, GptqLinearHost } from './gptqTypes.js';

/** GPTQ tensors whose shapes or settings contradict each other. */
export class GptqFormatError extends QllamaError {}

/** AutoGPTQ's quantize_config.json (GPTQ-for-LLaMa writes none). */
export interface QuantizeConfig {
  readonly bits?: number;
  readonly groupSize?: number;
  readonly descAct?: boolean;
  readonly sym?: boolean;
}

const BITS: readonly GptqBits[] = [2, 3, 4, 8];

export function readQuantizeConfig(dir: string): QuantizeConfig | undefined {
  const file = path.join(dir, 'quantize_config.json');
  if (!existsSync(file)) return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new GptqFormatError(`${file} is not valid JSON (${err instanceof Error ? err.message : String(err)}): fix or delete it`);
  }
  if (typeof raw !== 'object' || raw === null) throw new GptqFormatError(`${file} is not a JSON object`);
  const c = raw as Record<string, unknown>;
  const num = (v: unknown): number | undefined => (typeof v === 'number' ? v : undefined);
  const bool = (v: unknown): boolean | undefined => (typeof v === 'boolean' ? v : undefined);
  return { bits: num(c.bits), groupSize: num(c.group_size), descAct: bool(c.desc_act), sym: bool(c.sym) };
}

/**
 * Reads the GPTQ tensors of one linear layer (`<prefix>.qweight|qzeros|scales|g_idx|bias`) and
 * infers its settings from their shapes: bits = rows(qweight)·32 / in, groups = rows(scales),
 * groupsize = in / groups, act-order when g_idx is not the trivial i / groupsize.
 * A quantize_config.json, when present, must agree with the tensors.
 */
export function loadGptqLinear(store: WeightStore, prefix: string, inFeatures: number, outFeatures: number, quantizeConfig?: QuantizeConfig): GptqLinearHost {
  const bad = (what: string): GptqFormatError => new GptqFormatError(`${prefix}: ${what}; the GPTQ file is corrupt or does not match config.json`);
  const shapeOf = (name: string): readonly number[] => {
    const full = `${prefix}.${name}`;
    if (!store.has(full)) throw bad(`tensor ${name} is missing`);
    return store.entry(full).shape;
  };
  const qwShape = shapeOf('qweight');
  const scShape = shapeOf('scales');
  const qzShape = shapeOf('qzeros');
  if (qwShape.length !== 2 || qwShape[1] !== outFeatures) throw bad(`qweight has shape [${qwShape.join(', ')}], expected [in·bits/32, ${outFeatures}]`);
  const bits = (qwShape[0] * 32) / inFeatures;
  if (!BITS.includes(bits as GptqBits)) throw bad(`qweight has ${qwShape[0]} rows for ${inFeatures} inputs: ${bits} bits is not one of 2, 3, 4, 8`);
  if (scShape.length !== 2 || scShape[1] !== outFeatures || scShape[0] < 1) throw bad(`scales has shape [${scShape.join(', ')}], expected [groups, ${outFeatures}]`);
  const groups = scShape[0];
  const groupSize = inFeatures / groups;
  if (!Number.isInteger(groupSize)) throw bad(`${groups} groups do not divide ${inFeatures} inputs`);
  const zeroCols = (outFeatures * bits) / 32;
  if (qzShape.length !== 2 || qzShape[0] !== groups || qzShape[1] !== zeroCols) {
    throw bad(`qzeros has shape [${qzShape.join(', ')}], expected [${groups}, ${zeroCols}]`);
  }
  for (const [name, dtype] of [['qweight', 'I32'], ['qzeros', 'I32'], ['scales', 'F16']] as const) {
    const actual = store.entry(`${prefix}.${name}`).dtype;
    if (actual !== dtype) throw bad(`${name} is ${actual}, expected ${dtype}`);
  }

  let gIdx: Int32Array;
  let actOrder = false;
  if (store.has(`${prefix}.g_idx`)) {
    const gShape = store.entry(`${prefix}.g_idx`).shape;
    if (gShape.length !== 1 || gShape[0] !== inFeatures) throw bad(`g_idx has shape [${gShape.join(', ')}], expected [${inFeatures}]`);
    gIdx = Int32Array.from(asInt32(store.read(`${prefix}.g_idx`)));
    for (let i = 0; i < inFeatures; i++) {
      if (gIdx[i] < 0 || gIdx[i] >= groups) throw bad(`g_idx[${i}] = ${gIdx[i]} is outside [0, ${groups})`);
      if (gIdx[i] !== Math.floor(i / groupSize)) actOrder = true;
    }
  } else {
    gIdx = new Int32Array(inFeatures);
    for (let i = 0; i < inFeatures; i++) gIdx[i] = Math.floor(i / groupSize);
  }

  if (quantizeConfig) {
    const q = quantizeConfig;
    if (q.bits !== undefined && q.bits !== bits) throw bad(`quantize_config.json says ${q.bits} bits but the tensors hold ${bits}-bit values`);
    const expectedGroup = groups === 1 ? [-1, inFeatures] : [groupSize];
    if (q.groupSize !== undefined && !expectedGroup.includes(q.groupSize)) {
      throw bad(`quantize_config.json says group_size ${q.groupSize} but the tensors have ${groups} groups of ${groupSize}`);
    }
    if (q.descAct === false && actOrder) throw bad('quantize_config.json says desc_act false but g_idx is act-order');
  }

  const bias = store.has(`${prefix}.bias`) ? Uint16Array.from(asUint16(store.read(`${prefix}.bias`))) : undefined;
  return {
    kind: 'gptq', inFeatures, outFeatures, bits: bits as GptqBits, groupSize, groups, actOrder,
    qweight: Int32Array.from(asInt32(store.read(`${prefix}.qweight`))),
    qzeros: Int32Array.from(asInt32(store.read(`${prefix}.qzeros`))),
    scales: Uint16Array.from(asUint16(store.read(`${prefix}.scales`))),
    gIdx,
    ...(bias ? { bias } : {}),
  };
}

/**
 * Value `index` of a little-endian bitstream of `bits`-bit values in int32 words. GPTQ-for-LLaMa
 * packs 2/4/8-bit values whole within words; 3-bit puts 32 values in 3 words with values 10 and
 * 21 straddling word boundaries, which is exactly this continuous bitstream.
 */
function bitstreamValue(words: Int32Array, base: number, stride: number, index: number, bits: number): number {
  const bit = index * bits;
  const w = Math.floor(bit / 32);
  const shift = bit % 32;
  let v = words[base + w * stride] >>> shift;
  if (shift + bits > 32) v |= words[base + (w + 1) * stride] << (32 - shift);
  return v & ((1 << bits) - 1);
}

/** q values `[in, out]` (qweight is packed along the input dim, one bitstream per column). */
export function unpackQweight(layer: GptqLinearHost): Uint8Array {
  const { inFeatures: inF, outFeatures: out, bits, qweight } = layer;
  const q = new Uint8Array(inF * out);
  for (let i = 0; i < inF; i++) {
    for (let o = 0; o < out; o++) q[i * out + o] = bitstreamValue(qweight, o, out, i, bits);
  }
  return q;
}

/** Stored zero points `[groups, out]` (the true zero is stored + 1; qzeros is packed along the output dim). */
export function unpackQzeros(layer: GptqLinearHost): Uint8Array {
  const { groups, outFeatures: out, bits, qzeros } = layer;
  const cols = (out * bits) / 32;
  const z = new Uint8Array(groups * out);
  for (let g = 0; g < groups; g++) {
    for (let o = 0; o < out; o++) z[g * out + o] = bitstreamValue(qzeros, g * cols, 1, o, bits);
  }
  return z;
}

/** W `[out, in]` f32: W[o, i] = scales[g, o] · (q[i, o] − (z[g, o] + 1)), g = gIdx[i]. */
export function dequantizeGptq(layer: GptqLinearHost): Float32Array {
  const { inFeatures: inF, outFeatures: out, gIdx } = layer;
  const q = unpackQweight(layer);
  const z = unpackQzeros(layer);
  const w = new Float32Array(out * inF);
  for (let i = 0; i < inF; i++) {
    const g = gIdx[i];
    for (let o = 0; o < out; o++) {
      w[o * inF + i] = halfToFloat(layer.scales[g * out + o]) * (q[i * out + o] - (z[g * out + o] + 1));
    }
  }
  return w;
}

export interface PackInput {
  readonly bits: GptqBits;
  /** rows per group (inFeatures for one group) */
  readonly groupSize: number;
  /** quantized values `[in, out]`, each < 2^bits */
  readonly q: Uint8Array;
  /** true zero points `[groups, out]` (stored minus one, as GPTQ-for-LLaMa v1 does) */
  readonly zeros: Uint8Array;
  /** scales `[groups, out]`, stored as fp16 */
  readonly scales: Float32Array;
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** group of each input row (act-order); default i / groupSize */
  readonly gIdx?: Int32Array;
}

export interface PackedGptq {
  readonly qweight: Int32Array; // [in·bits/32, out]
  readonly qzeros: Int32Array; // [groups, out·bits/32]
  readonly scales: Uint16Array; // [groups, out] fp16 bits
  readonly gIdx: Int32Array; // [in]
}

/** The inverse of unpacking: GPTQ-for-LLaMa's `QuantLinear.pack` layout. */
export function packGptq(input: PackInput, floatToHalf: (f: number) => number): PackedGptq {
  const { bits, inFeatures: inF, outFeatures: out, groupSize } = input;
  if ((inF * bits) % 32 !== 0 || (out * bits) % 32 !== 0) throw new GptqFormatError(`cannot pack ${inF}×${out} at ${bits} bits: dimensions must fill whole int32 words`);
  const groups = Math.ceil(inF / groupSize);
  const qweight = new Int32Array((inF * bits / 32) * out);
  for (let i = 0; i < inF; i++) {
    for (let o = 0; o < out; o++) setBits(qweight, o, out, i, bits, input.q[i * out + o]);
  }
  const cols = (out * bits) / 32;
  const qzeros = new Int32Array(groups * cols);
  const mask = (1 << bits) - 1;
  for (let g = 0; g < groups; g++) {
    for (let o = 0; o < out; o++) setBits(qzeros, g * cols, 1, o, bits, (input.zeros[g * out + o] - 1) & mask);
  }
  const scales = new Uint16Array(groups * out);
  for (let k = 0; k < scales.length; k++) scales[k] = floatToHalf(input.scales[k]);
  const gIdx = input.gIdx ? Int32Array.from(input.gIdx) : Int32Array.from({ length: inF }, (_, i) => Math.floor(i / groupSize));
  return { qweight, qzeros, scales, gIdx };
}

function setBits(words: Int32Array, base: number, stride: number, index: number, bits: number, value: number): void {
  const bit = index * bits;
  const w = Math.floor(bit / 32);
  const shift = bit % 32;
  words[base + w * stride] |= value << shift;
  if (shift + bits > 32) words[base + (w + 1) * stride] |= value >>> (32 - shift);
}
