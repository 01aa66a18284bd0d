import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { ModelLoadError } from '../errors.js';
import { gptqLayout, planGptqLinear } from './gptq.js';
import { asInt32 } from './tensorViews.js';
import { quantizeConfigFromDir, type QuantizeConfig } from './quantizeConfig.js';
import { readLlamaConfig, type LlamaConfig } from './hfConfig.js';
import { SHARD_INDEX, WeightStore } from './weightStore.js';

/** What a model folder holds, as text-generation-webui would find it. */
export interface DiscoveredModel {
  readonly dir: string;
  readonly config: LlamaConfig;
  /** the .safetensors file, or the shard index .json */
  readonly weightsPath: string;
  /** why this weights file (several may be present) */
  readonly weightsChoiceReason: string;
  readonly format: 'fp16' | 'gptq';
  /** groupSize is -1 for one group per column, as GPTQ tools write it */
  readonly gptq?: { readonly bits: number; readonly groupSize: number; readonly actOrder: boolean; readonly sym?: boolean };
  readonly quantizeConfig?: QuantizeConfig;
  /** tokenizer files present (tokenizer.model, tokenizer.json, …); the tokenizer loader decides if they suffice */
  readonly tokenizerFiles: readonly string[];
}

/** The model folder does not exist (or is a file). */
export class ModelFolderNotFoundError extends ModelLoadError {}
/** The folder has no loadable weights, or --weights names a file that is not there. */
export class WeightsNotFoundError extends ModelLoadError {}
/** The weights hold neither GPTQ nor fp16 LLaMA linears. */
export class UnrecognizedWeightsError extends ModelLoadError {}

const TOKENIZER_FILES = ['tokenizer.model', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'];

/**
 * Finds config.json and the weights in `dir`, and detects fp16 vs GPTQ from the tensors
 * (`*.qweight` present → GPTQ; bits, group size and act-order then come from the first
 * layer's q_proj, checked as loadGptqLinear checks it, quantize_config.json included, reading only
 * its g_idx and qzeros).
 *
 * Weights choice, deterministic, first rule that applies:
 *   1. `--weights <file>` (relative to the folder, or absolute);
 *   2. `model.safetensors.index.json` (a sharded checkpoint);
 *   3. the only `*.safetensors` file;
 *   4. `model.safetensors` (the name save_pretrained writes) when present among several;
 *   5. the first `*.safetensors` in code-point name order. TheBloke's GPTQ repos shipped one file
 *      per variant side by side (`….compat.no-act-order.safetensors`, `….latest.act-order…`);
 *      name order picks "compat" over "latest", the variant every GPTQ runtime can load.
 * The reason names the rule, and the alternatives, so `qllama info` can show it.
 */
export function discoverModel(dir: string, options: { weights?: string } = {}): DiscoveredModel {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new ModelFolderNotFoundError(`model folder "${dir}" does not exist: pass a folder with config.json, tokenizer files and *.safetensors (or download one with 'qllama download')`);
  }
  const config = readLlamaConfig(dir);
  const { weightsPath, reason } = pickWeights(dir, options.weights);
  const quantizeConfig = quantizeConfigFromDir(dir);
  const tokenizerFiles = TOKENIZER_FILES.filter((f) => existsSync(path.join(dir, f)));
  const base = { dir, config, weightsPath, weightsChoiceReason: reason, tokenizerFiles, ...(quantizeConfig ? { quantizeConfig } : {}) };

  const store = WeightStore.open(weightsPath);
  try {
    const names = store.names();
    const qweight = names.find((n) => n.endsWith('.qweight'));
    if (!qweight) {
      if (!names.some((n) => /^model\.layers\.\d+\..*\.weight$/.test(n))) {
        throw new UnrecognizedWeightsError(`${path.basename(weightsPath)} holds no model.layers.*.weight or *.qweight tensors: it is not a Hugging Face LLaMA checkpoint`);
      }
      return { ...base, format: 'fp16' };
    }
    const probe = 'model.layers.0.self_attn.q_proj';
    if (!store.has(`${probe}.qweight`)) {
      throw new UnrecognizedWeightsError(`${path.basename(weightsPath)} has GPTQ tensors (${qweight}) but no ${probe}.qweight: it is not a GPTQ LLaMA checkpoint qllama knows`);
    }
    const dim = config.hiddenSize;
    // the probe checks what loadGptqLinear checks but reads only g_idx and qzeros (kilobytes), not qweight
    const plan = planGptqLinear(store, probe, dim, dim, quantizeConfig);
    const layout = gptqLayout(plan, asInt32(store.read(plan.names.qzeros)), plan.names.gIdx ? asInt32(store.read(plan.names.gIdx)) : undefined);
    return {
      ...base,
      format: 'gptq',
      gptq: { bits: plan.bits, groupSize: plan.groups === 1 ? -1 : layout.groupSize, actOrder: layout.actOrder, sym: layout.sym },
    };
  } finally {
    store.close();
  }
}

function pickWeights(dir: string, requested?: string): { weightsPath: string; reason: string } {
  const entries = readdirSync(dir);
  if (requested) {
    const p = path.resolve(dir, requested);
    if (!existsSync(p) || statSync(p).isDirectory()) {
      const have = entries.filter((f) => f.endsWith('.safetensors'));
      throw new WeightsNotFoundError(`--weights ${requested}: no such file in ${dir}${have.length ? ` (it has ${have.join(', ')})` : ''}`);
    }
    return { weightsPath: p, reason: `chosen with --weights ${requested}` };
  }
  if (entries.includes(SHARD_INDEX)) return { weightsPath: path.join(dir, SHARD_INDEX), reason: `sharded checkpoint (${SHARD_INDEX})` };
  const files = entries.filter((f) => f.endsWith('.safetensors')).sort(); // code-point order: the same on every OS and locale
  if (files.length === 0) {
    const others = entries.filter((f) => /\.(bin|pt|pth|ckpt)$/.test(f));
    const hint = others.length ? ` It has ${others.join(', ')}: convert them with 'qllama convert ${dir}'.` : ' Download the weights into it.';
    throw new WeightsNotFoundError(`${dir} holds no *.safetensors weights.${hint}`);
  }
  // pieces of a sharded checkpoint (…-00001-of-00002) are not loadable on their own
  const isShard = (f: string): boolean => Number(/-\d+-of-(\d+)\.safetensors$/.exec(f)?.[1] ?? 1) > 1;
  if (files.every(isShard)) {
    throw new WeightsNotFoundError(`${dir} holds shards (${files.join(', ')}) but no ${SHARD_INDEX}: download the index too`);
  }
  if (files.length === 1) return { weightsPath: path.join(dir, files[0]), reason: `the only .safetensors file (${files[0]})` };
  const others = (chosen: string): string => `other files: ${files.filter((f) => f !== chosen).join(', ')}; pick one with --weights`;
  if (files.includes('model.safetensors')) {
    return { weightsPath: path.join(dir, 'model.safetensors'), reason: `model.safetensors, the standard name, among ${files.length} .safetensors files (${others('model.safetensors')})` };
  }
  return { weightsPath: path.join(dir, files[0]), reason: `first of ${files.length} .safetensors files in name order (${others(files[0])})` };
}
