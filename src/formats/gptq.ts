import { ModelLoadError } from '../errors.js';
import { getPacked } from './gptqPacking.js';
import type { GptqBits, GptqLinearHost } from './gptqTypes.js';
import type { QuantizeConfig } from './quantizeConfig.js';
import { MissingTensorError, type SafetensorsDType } from './safetensors.js';
import { asInt32, asUint16 } from './tensorViews.js';
import type { WeightStore } from './weightStore.js';

export type { GptqBits, GptqLinearHost } from './gptqTypes.js';
export { dequantizeGptq, GptqPackError, packGptq, unpackQweight, unpackQzeros, type PackedGptq, type PackInput } from './gptqPacking.js';
export { quantizeConfigFromDir, QuantizeConfigError, type QuantizeConfig } from './quantizeConfig.js';

/** GPTQ tensors that are inconsistent in themselves; the subclasses say how. */
export class GptqFormatError extends ModelLoadError {}
/** A GPTQ tensor's shape or dtype disagrees with the layer or with the other tensors. */
export class GptqShapeError extends GptqFormatError {}
/** quantize_config.json says one thing and the tensors another. */
export class QuantizeConfigMismatchError extends GptqFormatError {}

const BITS: readonly number[] = [2, 3, 4, 8];

/**
 * Reads one GPTQ linear (`<prefix>.qweight|qzeros|scales`, optional `g_idx`, `bias`) and infers
 * its settings from the shapes, the way GPTQ-for-LLaMa files must be read (they carry no
 * config): bits = rows(qweight)·32 / in, groups = rows(scales), group size = in / groups
 * (or quantize_config's group_size when groups do not divide in), act-order when g_idx is not
 * the trivial i / groupSize. `inFeatures`/`outFeatures` come from config.json (hidden /
 * intermediate size); a g_idx must have exactly inFeatures entries. A quantize_config.json,
 * when given, must agree with what the tensors say.
 */
export function loadGptqLinear(store: WeightStore, prefix: string, inFeatures: number, outFeatures: number, quantizeConfig?: QuantizeConfig): GptqLinearHost {
  const where = (tensor: string): string => `${prefix}.${tensor}`;
  const shapeErr = (tensor: string, what: string): GptqShapeError =>
    new GptqShapeError(`${where(tensor)} ${what}: the GPTQ file is corrupt or does not belong to this config.json (in ${inFeatures}, out ${outFeatures})`);
  const shapeOf = (tensor: string, dtype: SafetensorsDType): readonly number[] => {
    if (!store.has(where(tensor))) throw new MissingTensorError(`GPTQ tensor ${where(tensor)} is missing: the checkpoint is incomplete or not GPTQ`);
    const e = store.entry(where(tensor));
    if (e.dtype !== dtype) throw shapeErr(tensor, `is ${e.dtype}, expected ${dtype}`);
    return e.shape;
  };
  const show = (s: readonly number[]): string => `[${s.join(', ')}]`;

  const qw = shapeOf('qweight', 'I32');
  if (qw.length !== 2 || qw[1] !== outFeatures) throw shapeErr('qweight', `has shape ${show(qw)}, expected [in·bits/32, ${outFeatures}]`);
  const bits = (qw[0] * 32) / inFeatures;
  if (!BITS.includes(bits)) throw shapeErr('qweight', `has ${qw[0]} rows for ${inFeatures} inputs, i.e. ${bits} bits: only 2, 3, 4 and 8 are GPTQ widths`);

  const sc = shapeOf('scales', 'F16');
  if (sc.length !== 2 || sc[1] !== outFeatures || sc[0] < 1 || sc[0] > inFeatures) throw shapeErr('scales', `has shape ${show(sc)}, expected [groups, ${outFeatures}]`);
  const groups = sc[0];
  const zeroCols = (outFeatures * bits) / 32;
  const qz = shapeOf('qzeros', 'I32');
  if (qz.length !== 2 || qz[0] !== groups || qz[1] !== zeroCols) throw shapeErr('qzeros', `has shape ${show(qz)}, expected [${groups}, ${zeroCols}] (groups from scales, ${bits} bits from qweight)`);

  let gIdx: Int32Array | undefined;
  if (store.has(where('g_idx'))) {
    const gs = shapeOf('g_idx', 'I32');
    if (gs.length !== 1 || gs[0] !== inFeatures) throw shapeErr('g_idx', `has shape ${show(gs)}, expected [${inFeatures}] (one group per input row)`);
    gIdx = asInt32(store.read(where('g_idx')));
    for (let i = 0; i < inFeatures; i++) {
      if (gIdx[i] < 0 || gIdx[i] >= groups) throw shapeErr('g_idx', `has g_idx[${i}] = ${gIdx[i]}, outside the ${groups} groups of scales`);
    }
  }
  const groupSize = inferGroupSize(inFeatures, groups, gIdx, quantizeConfig, (what) => shapeErr('scales', what));
  const trivial = (i: number): number => Math.floor(i / groupSize);
  const actOrder = gIdx !== undefined && gIdx.some((g, i) => g !== trivial(i));
  if (!gIdx) gIdx = Int32Array.from({ length: inFeatures }, (_, i) => trivial(i));

  let bias: Uint16Array | undefined;
  if (store.has(where('bias'))) {
    const bs = shapeOf('bias', 'F16');
    if (bs.length !== 1 || bs[0] !== outFeatures) throw shapeErr('bias', `has shape ${show(bs)}, expected [${outFeatures}]`);
    bias = asUint16(store.read(where('bias')));
  }

  const qzeros = asInt32(store.read(where('qzeros')));
  const sym = allZerosAre(qzeros, groups, outFeatures, bits, (1 << (bits - 1)) - 1);
  if (quantizeConfig) checkAgainstConfig(prefix, quantizeConfig, { bits, groups, groupSize, inFeatures, actOrder, hasGIdx: store.has(where('g_idx')), sym });

  return {
    kind: 'gptq', inFeatures, outFeatures, bits: bits as GptqBits, groupSize, groups, actOrder, sym,
    qweight: asInt32(store.read(where('qweight'))),
    qzeros,
    scales: asUint16(store.read(where('scales'))),
    gIdx,
    ...(bias ? { bias } : {}),
  };
}

/**
 * Rows per group. GPTQ makes ceil(in / groupsize) groups, so with a short last group `in /
 * groups` is not the answer; in order of trust: one group → in; quantize_config's group_size
 * when it yields this many groups; g_idx, where every full group has exactly groupsize rows
 * (act-order or not); in / groups when that divides (old files without g_idx).
 */
function inferGroupSize(inF: number, groups: number, gIdx: Int32Array | undefined, qc: QuantizeConfig | undefined, err: (what: string) => GptqShapeError): number {
  if (groups === 1) return inF;
  if (qc?.groupSize !== undefined && qc.groupSize > 0 && Math.ceil(inF / qc.groupSize) === groups) return qc.groupSize;
  if (gIdx) {
    const counts = new Int32Array(groups);
    for (const g of gIdx) counts[g]++;
    const size = Math.max(...counts);
    if (Math.ceil(inF / size) !== groups || counts.some((c, g) => c !== Math.min(size, inF - g * size))) {
      throw err(`and g_idx disagree: g_idx's ${groups} groups have ${[...new Set(counts)].join('/')} rows, not ceil(${inF} / groupsize) groups of groupsize rows`);
    }
    return size;
  }
  if (inF % groups === 0) return inF / groups;
  throw err(`has ${groups} groups, which do not divide ${inF} inputs; add quantize_config.json with the group_size`);
}

function allZerosAre(qzeros: Int32Array, groups: number, out: number, bits: number, stored: number): boolean {
  const cols = (out * bits) / 32;
  for (let g = 0; g < groups; g++) {
    for (let o = 0; o < out; o++) if (getPacked(qzeros, g * cols, 1, o, bits) !== stored) return false;
  }
  return true;
}

interface Inferred {
  readonly bits: number;
  readonly groups: number;
  readonly groupSize: number;
  readonly inFeatures: number;
  readonly actOrder: boolean;
  readonly hasGIdx: boolean;
  readonly sym: boolean;
}

function checkAgainstConfig(prefix: string, q: QuantizeConfig, t: Inferred): void {
  const fail = (what: string): QuantizeConfigMismatchError =>
    new QuantizeConfigMismatchError(`quantize_config.json ${what} (${prefix}); the config belongs to another quantization of the model: fix or delete it`);
  if (q.bits !== undefined && q.bits !== t.bits) throw fail(`says ${q.bits} bits but the tensors hold ${t.bits}-bit values`);
  if (q.groupSize !== undefined) {
    const expectedGroups = q.groupSize === -1 ? 1 : Math.ceil(t.inFeatures / q.groupSize);
    if (q.groupSize === 0 || q.groupSize < -1 || expectedGroups !== t.groups) {
      throw fail(`says group_size ${q.groupSize} but the tensors have ${t.groups} group(s) of ${t.groupSize} rows`);
    }
  }
  if (q.descAct === false && t.actOrder) throw fail('says desc_act false but g_idx is act-order (not i / group_size)');
  // with one group every g_idx is 0, so act-order leaves no trace; with several it must show
  if (q.descAct === true && t.groups > 1 && !t.actOrder) {
    throw fail(t.hasGIdx ? 'says desc_act true but g_idx is the trivial i / group_size' : 'says desc_act true but the layer has no g_idx');
  }
  if (q.sym === true && !t.sym) throw fail(`says sym true but the zero points are not all ${1 << (t.bits - 1)}`);
}
