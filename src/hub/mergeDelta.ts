import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { QllamaError } from '../errors.js';
import { DTYPE_BYTES, floatToHalf, toFloat32, type SafetensorsDType } from '../formats/safetensors.js';
import { writeShardedSafetensors, type TensorSpec as OutputTensor } from '../formats/safetensorsWriter.js';
import { openTensorSource, type TensorSource } from './tensorSource.js';

/** Base and delta (or base and target) do not describe the same model. */
export class DeltaMismatchError extends QllamaError {}

export interface DeltaOptions {
  /** the original LLaMA weights folder */
  readonly base: string;
  readonly out: string;
  /**
   * CarperAI's apply_delta: the base gets a `[PAD]` token first (embed_tokens and lm_head grow
   * by one zero row, 32000 → 32001). false = FastChat's plain elementwise delta.
   */
  readonly padToken?: boolean;
  readonly shardBytes?: number;
  readonly log?: (line: string) => void;
}

export interface DeltaReport {
  readonly tensors: number;
  /** tensors that got the extra [PAD] row */
  readonly padded: readonly string[];
  /** integer tensors (index buffers) copied from the base, not combined */
  readonly copied: readonly string[];
  readonly files: readonly string[];
}

const FLOAT_DTYPES: ReadonlySet<SafetensorsDType> = new Set(['F16', 'BF16', 'F32', 'F64']);
const VOCAB_TENSOR = /(^|\.)(embed_tokens|lm_head)\.weight$/;
const TOKENIZER_FILES = ['tokenizer.model', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'added_tokens.json'];

/** base (+[PAD]) + delta = target, summed in fp32, saved fp16; tokenizer from the delta. */
export async function mergeDelta(options: DeltaOptions & { readonly delta: string }): Promise<DeltaReport> {
  return combine(options, options.delta, 'add', 'F16');
}

/** target − base (+[PAD]) = delta: the inverse, to publish a fine-tune without the base weights. */
export async function makeDelta(options: DeltaOptions & { readonly target: string; readonly dtype?: 'F16' | 'F32' }): Promise<DeltaReport> {
  return combine(options, options.target, 'sub', options.dtype ?? 'F16');
}

interface Plan {
  readonly name: string;
  readonly out: OutputTensor;
  readonly pad: boolean;
  readonly combine: boolean;
}

async function combine(options: DeltaOptions, otherDir: string, op: 'add' | 'sub', floatOut: 'F16' | 'F32'): Promise<DeltaReport> {
  const pad = options.padToken ?? true;
  const log = options.log ?? (() => undefined);
  for (const input of [options.base, otherDir]) {
    if (path.resolve(input) === path.resolve(options.out)) throw new DeltaMismatchError(`--out ${options.out} is also an input; write to a new folder`);
  }
  const base = openTensorSource(options.base);
  let other: TensorSource | undefined;
  try {
    other = openTensorSource(otherDir);
    const plans = plan(base, other, pad);
    const padded = plans.filter((p) => p.pad).map((p) => p.name);
    if (pad && padded.length === 0) {
      log('note: no tensor needed the [PAD] row (shapes already match); merged elementwise');
    }
    await mkdir(options.out, { recursive: true });
    const byName = new Map(plans.map((p) => [p.name, p]));
    const src = other;
    const outputs = plans.map((p) => (p.combine ? { ...p.out, dtype: floatOut } : p.out));
    let done = 0;
    const files = await writeShardedSafetensors(options.out, outputs, (name) => {
      const p = byName.get(name) as Plan;
      done++;
      if (done % 50 === 0 || done === plans.length) log(`${done}/${plans.length} tensors`);
      return p.combine ? combined(base, src, p, op, floatOut) : base.read(name);
    }, { shardBytes: options.shardBytes });
    await writeSideFiles(options.base, otherDir, options.out, op, padded.length > 0 ? outputs.find((o) => VOCAB_TENSOR.test(o.name))?.shape[0] : undefined);
    return { tensors: plans.length, padded, copied: plans.filter((p) => !p.combine).map((p) => p.name), files };
  } finally {
    base.close();
    other?.close();
  }
}

/** Check names and shapes up front, so a mismatch fails before hours of writing. */
function plan(base: TensorSource, other: TensorSource, pad: boolean): Plan[] {
  const baseNames = base.names();
  const otherNames = new Set(other.names());
  const missing = baseNames.filter((n) => !otherNames.has(n));
  const extra = [...otherNames].filter((n) => !baseNames.includes(n));
  if (missing.length || extra.length) {
    const show = (xs: string[]): string => xs.slice(0, 5).join(', ') + (xs.length > 5 ? ` and ${xs.length - 5} more` : '');
    throw new DeltaMismatchError(`the tensors differ: ${missing.length ? `${other.origin} lacks ${show(missing)}` : ''}${missing.length && extra.length ? '; ' : ''}${extra.length ? `${base.origin} lacks ${show(extra)}` : ''}. Is the base the right model (e.g. LLaMA-13B for a 13B delta)?`);
  }
  return baseNames.map((name) => {
    const b = base.info(name);
    const o = other.info(name);
    const same = b.shape.length === o.shape.length && b.shape.every((d, i) => d === o.shape[i]);
    const grows = !same && pad && VOCAB_TENSOR.test(name) && b.shape.length === 2 && o.shape.length === 2
      && o.shape[0] === (b.shape[0] as number) + 1 && o.shape[1] === b.shape[1];
    if (!same && !grows) {
      const hint = pad ? '' : ' (if the delta adds a [PAD] token, drop --no-pad-token)';
      throw new DeltaMismatchError(`"${name}" is [${b.shape.join(', ')}] in ${base.origin} but [${o.shape.join(', ')}] in ${other.origin}${hint}`);
    }
    const isFloat = FLOAT_DTYPES.has(b.dtype) && FLOAT_DTYPES.has(o.dtype);
    if (!isFloat && (b.dtype !== o.dtype || grows)) throw new DeltaMismatchError(`"${name}" is ${b.dtype} in ${base.origin} but ${o.dtype} in ${other.origin}`);
    return { name, pad: grows, combine: isFloat, out: { name, dtype: b.dtype, shape: o.shape } };
  });
}

// Elements converted to fp32 at a time: keeps the temporaries at 256 KB, not 4 bytes × tensor.
const CHUNK = 1 << 16;

/**
 * One tensor: fp32 arithmetic, rounded once to the output dtype. Works chunk by chunk on the
 * raw bytes, so the memory it needs is the two inputs and the output, nothing per element more.
 * With the [PAD] row, the base has fewer elements than the other side: the missing tail (the
 * last row, row-major) is zero, as resize_token_embeddings then `[-1:] = 0` makes it.
 */
function combined(base: TensorSource, other: TensorSource, p: Plan, op: 'add' | 'sub', floatOut: 'F16' | 'F32'): Uint8Array {
  const bi = base.info(p.name);
  const oi = other.info(p.name);
  const bRaw = base.read(p.name);
  const oRaw = other.read(p.name);
  const bElem = DTYPE_BYTES[bi.dtype];
  const oElem = DTYPE_BYTES[oi.dtype];
  const n = oRaw.byteLength / oElem;
  const baseCount = bRaw.byteLength / bElem;
  const out32 = floatOut === 'F32' ? new Float32Array(n) : undefined;
  const out16 = floatOut === 'F16' ? new Uint16Array(n) : undefined;
  const sum = new Float32Array(1); // round to fp32 first, as torch's fp32 add does, then to fp16
  for (let s = 0; s < n; s += CHUNK) {
    const e = Math.min(n, s + CHUNK);
    const o = toFloat32(oi.dtype, oRaw.subarray(s * oElem, e * oElem));
    const b = s < baseCount ? toFloat32(bi.dtype, bRaw.subarray(s * bElem, Math.min(e, baseCount) * bElem)) : EMPTY;
    for (let i = 0; i < e - s; i++) {
      const bv = i < b.length ? (b[i] as number) : 0;
      const ov = o[i] as number;
      if (op === 'add') sum[0] = bv + ov;
      else {
        sum[0] = ov - bv;
        // (-0) − (−0) is +0, and base + (+0) would give +0 back: keep the sign so the round trip is bit-exact.
        if (sum[0] === 0 && Object.is(ov, -0)) sum[0] = -0;
      }
      if (out32) out32[s + i] = sum[0] as number;
      else (out16 as Uint16Array)[s + i] = floatToHalf(sum[0] as number);
    }
  }
  const out = out32 ?? (out16 as Uint16Array);
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

const EMPTY = new Float32Array(0);

/**
 * config.json from the base (merge) or the target (make), with vocab_size following the [PAD]
 * growth; generation_config.json likewise; tokenizer files from the delta (or the target),
 * which is where the [PAD] token is defined.
 */
async function writeSideFiles(baseDir: string, otherDir: string, outDir: string, op: 'add' | 'sub', vocabSize: number | undefined): Promise<void> {
  const configFrom = [op === 'add' ? baseDir : otherDir, op === 'add' ? otherDir : baseDir].map(dirOf);
  for (const name of ['config.json', 'generation_config.json']) {
    const src = configFrom.map((d) => path.join(d, name)).find((f) => existsSync(f));
    if (!src) continue;
    if (name === 'config.json') {
      const config = JSON.parse(await readFile(src, 'utf8')) as Record<string, unknown>;
      if (vocabSize !== undefined) config.vocab_size = vocabSize;
      if (op === 'add') config.torch_dtype = 'float16';
      await writeFile(path.join(outDir, name), `${JSON.stringify(config, null, 2)}\n`);
    } else await copyFile(src, path.join(outDir, name));
  }
  for (const name of TOKENIZER_FILES) {
    const src = path.join(dirOf(otherDir), name);
    if (existsSync(src)) await copyFile(src, path.join(outDir, name));
  }
}

function dirOf(p: string): string {
  return existsSync(p) && !p.endsWith('.json') && !p.endsWith('.safetensors') && !p.endsWith('.bin') ? p : path.dirname(p);
}
