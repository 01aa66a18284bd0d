import { ModelLoadError } from '../errors.js';
import { setPacked } from './gptqPacking.js';
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

/** One GPTQ linear's tensors, checked against each other and the layer by their headers alone. */
export interface GptqPlan {
  readonly prefix: string;
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly bits: GptqBits;
  readonly groups: number;
  readonly quantizeConfig?: QuantizeConfig;
  /** tensor names to read: qweight, qzeros, scales always; g_idx and bias when the file has them */
  readonly names: { readonly qweight: string; readonly qzeros: string; readonly scales: string; readonly gIdx?: string; readonly bias?: string };
}

/** The raw bytes of a plan's tensors, as read from the file. */
export interface GptqTensorBytes {
  readonly qweight: Uint8Array;
  readonly qzeros: Uint8Array;
  readonly scales: Uint8Array;
  readonly gIdx?: Uint8Array;
  readonly bias?: Uint8Array;
}

/** What the values of g_idx and qzeros say about a layer. */
export interface GptqLayout {
  readonly groupSize: number;
  readonly actOrder: boolean;
  readonly sym: boolean;
  /** the file's g_idx, or the trivial i / groupSize when it has none */
  readonly gIdx: Int32Array;
}

/**
 * Reads one GPTQ linear (`<prefix>.qweight|qzeros|scales`, optional `g_idx`, `bias`) and infers
 * its settings from the shapes, the way GPTQ-for-LLaMa files must be read (they carry no
 * config): bits = rows(qweight)·32 / in, groups = rows(scales), group size = in / groups
 * (or quantize_config's group_size when groups do not divide in), act-order when g_idx is not
 * the trivial i / groupSize. `inFeatures`/`outFeatures` come from config.json (hidden /
 * intermediate size); a g_idx must have exactly inFeatures entries. A quantize_config.json,
 * when given, must agree with what the tensors say.
 * Split for loaders that read asynchronously: planGptqLinear (headers) → read plan.names →
 * finishGptqLinear (values).
 */
export function loadGptqLinear(store: WeightStore, prefix: string, inFeatures: number, outFeatures: number, quantizeConfig?: QuantizeConfig): GptqLinearHost {
  const plan = planGptqLinear(store, prefix, inFeatures, outFeatures, quantizeConfig);
  const { names } = plan;
  return finishGptqLinear(plan, {
    qweight: store.read(names.qweight), qzeros: store.read(names.qzeros), scales: store.read(names.scales),
    ...(names.gIdx ? { gIdx: store.read(names.gIdx) } : {}),
    ...(names.bias ? { bias: store.read(names.bias) } : {}),
  });
}

/** Every check that needs only the tensors' headers (dtypes, shapes, presence); reads nothing. */
export function planGptqLinear(store: WeightStore, prefix: string, inFeatures: number, outFeatures: number, quantizeConfig?: QuantizeConfig): GptqPlan {
  const where = (tensor: string): string => `${prefix}.${tensor}`;
  const shapeErr = (tensor: string, what: string): GptqShapeError => gptqShapeError(prefix, tensor, what, inFeatures, outFeatures);
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

  const hasGIdx = store.has(where('g_idx'));
  if (hasGIdx) {
    const gs = shapeOf('g_idx', 'I32');
    if (gs.length !== 1 || gs[0] !== inFeatures) throw shapeErr('g_idx', `has shape ${show(gs)}, expected [${inFeatures}] (one group per input row)`);
  }
  const hasBias = store.has(where('bias'));
  if (hasBias) {
    const bs = shapeOf('bias', 'F16');
    if (bs.length !== 1 || bs[0] !== outFeatures) throw shapeErr('bias', `has shape ${show(bs)}, expected [${outFeatures}]`);
  }
  return {
    prefix, inFeatures, outFeatures, bits: bits as GptqBits, groups, ...(quantizeConfig ? { quantizeConfig } : {}),
    names: {
      qweight: where('qweight'), qzeros: where('qzeros'), scales: where('scales'),
      ...(hasGIdx ? { gIdx: where('g_idx') } : {}), ...(hasBias ? { bias: where('bias') } : {}),
    },
  };
}

/** The checks on values (g_idx range and groups, zero points, quantize_config) and the host layer; views share the bytes' memory. */
export function finishGptqLinear(plan: GptqPlan, t: GptqTensorBytes): GptqLinearHost {
  const qzeros = asInt32(t.qzeros);
  const layout = gptqLayout(plan, qzeros, t.gIdx ? asInt32(t.gIdx) : undefined);
  return {
    kind: 'gptq', inFeatures: plan.inFeatures, outFeatures: plan.outFeatures, bits: plan.bits, groupSize: layout.groupSize, groups: plan.groups,
    actOrder: layout.actOrder, sym: layout.sym,
    qweight: asInt32(t.qweight),
    qzeros,
    scales: asUint16(t.scales),
    gIdx: layout.gIdx,
    ...(t.bias ? { bias: asUint16(t.bias) } : {}),
  };
}

/** Group size, act-order and symmetry from g_idx and qzeros (all a model folder's probe needs), checked as loadGptqLinear does. */
export function gptqLayout(plan: GptqPlan, qzeros: Int32Array, fileGIdx: Int32Array | undefined): GptqLayout {
  const { inFeatures, outFeatures, groups, bits, quantizeConfig } = plan;
  const shapeErr = (tensor: string, what: string): GptqShapeError => gptqShapeError(plan.prefix, tensor, what, inFeatures, outFeatures);
  if (fileGIdx) {
    for (let i = 0; i < inFeatures; i++) {
      const g = fileGIdx[i];
      if (g < 0 || g >= groups) throw shapeErr('g_idx', `has g_idx[${i}] = ${g}, outside the ${groups} groups of scales`);
    }
  }
  const groupSize = inferGroupSize(inFeatures, groups, fileGIdx, quantizeConfig, (what) => shapeErr('scales', what));
  let actOrder = false;
  if (fileGIdx) {
    for (let i = 0; i < inFeatures; i++) {
      if (fileGIdx[i] !== Math.floor(i / groupSize)) {
        actOrder = true;
        break;
      }
    }
  }
  const gIdx = fileGIdx ?? trivialGIdx(inFeatures, groupSize);
  const sym = allZerosAre(qzeros, bits, (1 << (bits - 1)) - 1);
  if (quantizeConfig) checkAgainstConfig(plan.prefix, quantizeConfig, { bits, groups, groupSize, inFeatures, actOrder, hasGIdx: fileGIdx !== undefined, sym });
  return { groupSize, actOrder, sym, gIdx };
}

function gptqShapeError(prefix: string, tensor: string, what: string, inFeatures: number, outFeatures: number): GptqShapeError {
  return new GptqShapeError(`${prefix}.${tensor} ${what}: the GPTQ file is corrupt or does not belong to this config.json (in ${inFeatures}, out ${outFeatures})`);
}

function trivialGIdx(inFeatures: number, groupSize: number): Int32Array {
  const g = new Int32Array(inFeatures);
  for (let i = 0; i < inFeatures; i++) g[i] = Math.floor(i / groupSize);
  return g;
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

/**
 * Every `bits`-bit value of qzeros equals `stored`. Rows of qzeros are whole words (O·bits/32 of
 * them) and the value stream repeats every lcm(bits, 32) bits, so the check compares words with
 * one period of the expected stream (1 word; 3 words for 3 bits) instead of unpacking each value.
 */
function allZerosAre(qzeros: Int32Array, bits: number, stored: number): boolean {
  const period = bits === 3 ? 3 : 1;
  const pattern = new Int32Array(period);
  for (let k = 0; k < (period * 32) / bits; k++) setPacked(pattern, 0, 1, k, bits, stored);
  const cols = qzeros.length; // a multiple of `period`: O·bits/32 words per row, O a multiple of 32 for 3 bits
  if (period === 1) {
    const p = pattern[0];
    for (let w = 0; w < cols; w++) if (qzeros[w] !== p) return false;
    return true;
  }
  for (let w = 0; w < cols; w++) if (qzeros[w] !== pattern[w % 3]) return false;
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
