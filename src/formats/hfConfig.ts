import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ModelLoadError } from '../errors.js';

/** The parts of a Hugging Face LLaMA `config.json` the model code uses. */
export interface LlamaConfig {
  readonly modelType: string;
  readonly architectures: readonly string[];
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  /** grouped-query attention; equals numHeads for LLaMA-1 */
  readonly numKvHeads: number;
  readonly vocabSize: number;
  readonly rmsNormEps: number;
  readonly ropeTheta: number;
  readonly maxPositionEmbeddings: number;
  readonly bosTokenId: number;
  readonly eosTokenId: number;
  readonly padTokenId?: number;
  readonly tieWordEmbeddings: boolean;
}

/** The folder has no config.json. */
export class MissingConfigError extends ModelLoadError {}
/** config.json is not valid JSON, or not an object. */
export class ConfigSyntaxError extends ModelLoadError {}
/** A field config.json needs is missing or has a wrong value. */
export class ConfigFieldError extends ModelLoadError {}
/** config.json describes an architecture qllama does not run. */
export class UnsupportedModelTypeError extends ModelLoadError {}

const SUPPORTED_TYPES = ['llama'];

export function readLlamaConfig(dir: string): LlamaConfig {
  const file = path.join(dir, 'config.json');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    throw new MissingConfigError(`${dir} has no config.json: a model folder needs config.json, tokenizer files and *.safetensors weights`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigSyntaxError(`${file} is not valid JSON (${err instanceof Error ? err.message : String(err)}): fix or re-download it`);
  }
  return parseLlamaConfig(raw, file);
}

export function parseLlamaConfig(raw: unknown, file = 'config.json'): LlamaConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigSyntaxError(`${file} is not a JSON object: fix or re-download it`);
  const c = raw as Record<string, unknown>;
  const int = (key: string, fallback?: number, min = 0): number => {
    const v = c[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
      const want = min > 0 ? 'a positive integer' : 'a non-negative integer';
      throw new ConfigFieldError(`${file}: "${key}" is ${v === undefined ? 'missing' : `not ${want} (${JSON.stringify(v)})`}; a LLaMA config needs it`);
    }
    return v;
  };
  const dim = (key: string, fallback?: number): number => int(key, fallback, 1);
  // newer configs may list several ids (e.g. eos_token_id: [2, 32000]); the first is the canonical one
  const tokenId = (key: string, fallback: number): number => {
    const v = c[key];
    if (!Array.isArray(v)) return int(key, fallback);
    const first: unknown = v[0];
    if (typeof first !== 'number' || !Number.isInteger(first) || first < 0) {
      throw new ConfigFieldError(`${file}: "${key}" is ${JSON.stringify(v)}, not a token id or a list of them; fix it`);
    }
    return first;
  };
  const num = (key: string, fallback: number): number => {
    const v = c[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new ConfigFieldError(`${file}: "${key}" must be a number, got ${JSON.stringify(v)}`);
    return v;
  };
  // very early LLaMA conversions (decapoda-research) omit model_type; they are all LLaMA
  const modelType = c.model_type === undefined ? 'llama' : c.model_type;
  if (typeof modelType !== 'string') throw new ConfigFieldError(`${file}: "model_type" is ${JSON.stringify(modelType)}, not a string; fix or re-download it`);
  if (!SUPPORTED_TYPES.includes(modelType)) {
    throw new UnsupportedModelTypeError(`${file}: model_type "${modelType}" is not supported; qllama runs LLaMA-architecture models (model_type "llama")`);
  }
  const hiddenSize = dim('hidden_size');
  const numHeads = dim('num_attention_heads');
  const numKvHeads = dim('num_key_value_heads', numHeads);
  if (hiddenSize % numHeads !== 0) throw new ConfigFieldError(`${file}: hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numHeads}`);
  if (numHeads % numKvHeads !== 0) throw new ConfigFieldError(`${file}: num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  if ((hiddenSize / numHeads) % 2 !== 0) throw new ConfigFieldError(`${file}: head dimension ${hiddenSize / numHeads} must be even for rotary embeddings`);
  const pad = c.pad_token_id;
  return {
    modelType,
    architectures: Array.isArray(c.architectures) ? c.architectures.filter((a): a is string => typeof a === 'string') : [],
    hiddenSize,
    intermediateSize: dim('intermediate_size'),
    numLayers: dim('num_hidden_layers'),
    numHeads,
    numKvHeads,
    vocabSize: dim('vocab_size'),
    rmsNormEps: num('rms_norm_eps', 1e-6),
    ropeTheta: num('rope_theta', 10000),
    maxPositionEmbeddings: dim('max_position_embeddings', 2048),
    bosTokenId: tokenId('bos_token_id', 1),
    eosTokenId: tokenId('eos_token_id', 2),
    ...(typeof pad === 'number' && pad >= 0 ? { padTokenId: pad } : {}),
    tieWordEmbeddings: c.tie_word_embeddings === true,
  };
}
