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

const SUPPORTED_TYPES = ['llama'];

export function readLlamaConfig(dir: string): LlamaConfig {
  const file = path.join(dir, 'config.json');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    throw new ModelLoadError(`${dir} has no config.json: a model folder needs config.json, tokenizer files and *.safetensors weights`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ModelLoadError(`${file} is not valid JSON (${err instanceof Error ? err.message : String(err)}): fix or re-download it`);
  }
  return parseLlamaConfig(raw, file);
}

export function parseLlamaConfig(raw: unknown, file = 'config.json'): LlamaConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ModelLoadError(`${file} is not a JSON object`);
  const c = raw as Record<string, unknown>;
  const int = (key: string, fallback?: number): number => {
    const v = c[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
      throw new ModelLoadError(`${file}: "${key}" is ${v === undefined ? 'missing' : `not a non-negative integer (${JSON.stringify(v)})`}; a LLaMA config needs it`);
    }
    return v;
  };
  const num = (key: string, fallback: number): number => {
    const v = c[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new ModelLoadError(`${file}: "${key}" must be a number, got ${JSON.stringify(v)}`);
    return v;
  };
  const modelType = typeof c.model_type === 'string' ? c.model_type : 'llama';
  if (!SUPPORTED_TYPES.includes(modelType)) {
    throw new ModelLoadError(`${file}: model_type "${modelType}" is not supported; qllama runs LLaMA-architecture models (model_type "llama")`);
  }
  const hiddenSize = int('hidden_size');
  const numHeads = int('num_attention_heads');
  const numKvHeads = int('num_key_value_heads', numHeads);
  if (numHeads === 0 || hiddenSize % numHeads !== 0) throw new ModelLoadError(`${file}: hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numHeads}`);
  if (numKvHeads === 0 || numHeads % numKvHeads !== 0) throw new ModelLoadError(`${file}: num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  if ((hiddenSize / numHeads) % 2 !== 0) throw new ModelLoadError(`${file}: head dimension ${hiddenSize / numHeads} must be even for rotary embeddings`);
  const pad = c.pad_token_id;
  return {
    modelType,
    architectures: Array.isArray(c.architectures) ? c.architectures.filter((a): a is string => typeof a === 'string') : [],
    hiddenSize,
    intermediateSize: int('intermediate_size'),
    numLayers: int('num_hidden_layers'),
    numHeads,
    numKvHeads,
    vocabSize: int('vocab_size'),
    rmsNormEps: num('rms_norm_eps', 1e-6),
    ropeTheta: num('rope_theta', 10000),
    maxPositionEmbeddings: int('max_position_embeddings', 2048),
    bosTokenId: int('bos_token_id', 1),
    eosTokenId: int('eos_token_id', 2),
    ...(typeof pad === 'number' && pad >= 0 ? { padTokenId: pad } : {}),
    tieWordEmbeddings: c.tie_word_embeddings === true,
  };
}
