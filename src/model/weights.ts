import type { Backend, EmbeddingWeight, LinearHost, LinearWeight, VectorWeight } from '../backends/backend.js';
import { loadGptqLinear, type QuantizeConfig } from '../formats/gptq.js';
import type { LlamaConfig } from '../formats/hfConfig.js';
import { asUint16, floatToHalf, toFloat32 } from '../formats/safetensors.js';
import type { WeightStore } from '../formats/weightStore.js';
import { ModelLoadError } from '../errors.js';

/** One decoder layer's parameters, uploaded to a backend. */
export interface LayerWeights {
  readonly attnNorm: VectorWeight; // [dim]
  readonly q: LinearWeight; // [heads·headDim, dim]
  readonly k: LinearWeight; // [kvHeads·headDim, dim]
  readonly v: LinearWeight; // [kvHeads·headDim, dim]
  readonly o: LinearWeight; // [dim, heads·headDim]
  readonly mlpNorm: VectorWeight; // [dim]
  readonly gate: LinearWeight; // [ffn, dim]
  readonly up: LinearWeight; // [ffn, dim]
  readonly down: LinearWeight; // [dim, ffn]
}

export interface LlamaWeights {
  readonly embed: EmbeddingWeight; // [vocab, dim]
  readonly layers: readonly LayerWeights[];
  readonly norm: VectorWeight; // [dim]
  readonly lmHead: LinearWeight; // [vocab, dim]
}

/**
 * Reads every parameter of a Hugging Face LLaMA checkpoint (fp16 or GPTQ linears, decided per
 * tensor by the presence of `.qweight`) from `store` and uploads it, one tensor at a time, so
 * host memory holds at most one layer's linear at once.
 */
export function bindLlamaWeights(store: WeightStore, config: LlamaConfig, backend: Backend, quantizeConfig?: QuantizeConfig): LlamaWeights {
  const dim = config.hiddenSize;
  const headDim = dim / config.numHeads;
  const kvDim = config.numKvHeads * headDim;
  const ffn = config.intermediateSize;

  const linear = (prefix: string, inF: number, outF: number): LinearWeight => {
    const host: LinearHost = store.has(`${prefix}.qweight`)
      ? loadGptqLinear(store, prefix, inF, outF, quantizeConfig)
      : denseLinear(store, prefix, inF, outF);
    return backend.uploadLinear(host);
  };
  const vector = (name: string, length: number): VectorWeight => {
    const data = readFloat(store, name, [length]);
    return backend.uploadVector(data);
  };

  const layers: LayerWeights[] = [];
  for (let l = 0; l < config.numLayers; l++) {
    const p = `model.layers.${l}`;
    layers.push({
      attnNorm: vector(`${p}.input_layernorm.weight`, dim),
      q: linear(`${p}.self_attn.q_proj`, dim, dim),
      k: linear(`${p}.self_attn.k_proj`, dim, kvDim),
      v: linear(`${p}.self_attn.v_proj`, dim, kvDim),
      o: linear(`${p}.self_attn.o_proj`, dim, dim),
      mlpNorm: vector(`${p}.post_attention_layernorm.weight`, dim),
      gate: linear(`${p}.mlp.gate_proj`, dim, ffn),
      up: linear(`${p}.mlp.up_proj`, dim, ffn),
      down: linear(`${p}.mlp.down_proj`, ffn, dim),
    });
  }
  const embedHalf = readHalf(store, 'model.embed_tokens.weight', [config.vocabSize, dim]);
  const embed = backend.uploadEmbedding(embedHalf, config.vocabSize, dim);
  const lmHeadName = store.has('lm_head.weight') || !config.tieWordEmbeddings ? 'lm_head' : undefined;
  const lmHead = lmHeadName
    ? linear(lmHeadName, dim, config.vocabSize)
    : backend.uploadLinear({ kind: 'dense', inFeatures: dim, outFeatures: config.vocabSize, data: embedHalf });
  return { embed, layers, norm: vector('model.norm.weight', dim), lmHead };
}

function denseLinear(store: WeightStore, prefix: string, inF: number, outF: number): LinearHost {
  const data = readHalf(store, `${prefix}.weight`, [outF, inF]);
  const bias = store.has(`${prefix}.bias`) ? readHalf(store, `${prefix}.bias`, [outF]) : undefined;
  return { kind: 'dense', inFeatures: inF, outFeatures: outF, data, bias };
}

function checkShape(store: WeightStore, name: string, shape: readonly number[]): void {
  if (!store.has(name)) {
    throw new ModelLoadError(`tensor "${name}" is missing from the weights: the checkpoint is incomplete or not a LLaMA model; re-download it`);
  }
  const actual = store.entry(name).shape;
  if (actual.length !== shape.length || actual.some((d, i) => d !== shape[i])) {
    throw new ModelLoadError(`tensor "${name}" has shape [${actual.join(', ')}] but config.json implies [${shape.join(', ')}]: config.json and the weights do not belong together`);
  }
}

/** Any float tensor as raw fp16 bits (fp16 is copied as is; bf16/f32 are rounded). */
function readHalf(store: WeightStore, name: string, shape: readonly number[]): Uint16Array {
  checkShape(store, name, shape);
  const entry = store.entry(name);
  const buf = store.read(name);
  if (entry.dtype === 'F16') return asUint16(buf);
  const f = toFloat32(entry.dtype, buf);
  const out = new Uint16Array(f.length);
  for (let i = 0; i < f.length; i++) out[i] = floatToHalf(f[i]);
  return out;
}

function readFloat(store: WeightStore, name: string, shape: readonly number[]): Float32Array {
  checkShape(store, name, shape);
  return toFloat32(store.entry(name).dtype, store.read(name));
}
