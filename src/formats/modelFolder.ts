import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { ModelLoadError } from '../errors.js';
import { readQuantizeConfig, type QuantizeConfig } from './gptq.js';
import { readLlamaConfig, type LlamaConfig } from './hfConfig.js';
import { asInt32 } from './safetensors.js';
import { WeightStore } from './weightStore.js';

/** What a model folder holds, as text-generation-webui would find it. */
export interface DiscoveredModel {
  readonly dir: string;
  readonly config: LlamaConfig;
  /** the .safetensors file, or the shard index .json */
  readonly weightsPath: string;
  /** why this weights file (several may be present) */
  readonly weightsChoiceReason: string;
  readonly format: 'fp16' | 'gptq';
  readonly gptq?: { readonly bits: number; readonly groupSize: number; readonly actOrder: boolean };
  readonly quantizeConfig?: QuantizeConfig;
}

/**
 * Finds config.json and the weights in `dir`, and detects fp16 vs GPTQ from the tensors.
 * Weights choice, deterministic: `--weights` if given; else model.safetensors.index.json
 * (sharded); else the only *.safetensors; else, among several, the alphabetically first — with
 * the reason saying so and naming --weights, since TheBloke's repos kept one file per branch.
 */
export function discoverModel(dir: string, options: { weights?: string } = {}): DiscoveredModel {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new ModelLoadError(`model folder "${dir}" does not exist: pass a folder with config.json, tokenizer files and *.safetensors (or download one with 'qllama download')`);
  }
  const config = readLlamaConfig(dir);
  const { weightsPath, reason } = pickWeights(dir, options.weights);
  const store = WeightStore.open(weightsPath);
  try {
    const quantizeConfig = readQuantizeConfig(dir);
    const probe = 'model.layers.0.self_attn.q_proj';
    if (!store.has(`${probe}.qweight`)) {
      if (!store.has(`${probe}.weight`)) {
        throw new ModelLoadError(`${path.basename(weightsPath)} has neither ${probe}.qweight nor .weight: it is not a Hugging Face LLaMA checkpoint`);
      }
      return { dir, config, weightsPath, weightsChoiceReason: reason, format: 'fp16', ...(quantizeConfig ? { quantizeConfig } : {}) };
    }
    const qw = store.entry(`${probe}.qweight`).shape;
    const sc = store.entry(`${probe}.scales`).shape;
    const bits = (qw[0] * 32) / config.hiddenSize;
    const groupSize = config.hiddenSize / sc[0];
    let actOrder = false;
    if (store.has(`${probe}.g_idx`)) {
      const g = asInt32(store.read(`${probe}.g_idx`));
      actOrder = g.some((v, i) => v !== Math.floor(i / groupSize));
    }
    return {
      dir, config, weightsPath, weightsChoiceReason: reason, format: 'gptq',
      gptq: { bits, groupSize: sc[0] === 1 ? -1 : groupSize, actOrder },
      ...(quantizeConfig ? { quantizeConfig } : {}),
    };
  } finally {
    store.close();
  }
}

function pickWeights(dir: string, requested?: string): { weightsPath: string; reason: string } {
  if (requested) {
    const p = path.isAbsolute(requested) ? requested : path.join(dir, requested);
    if (!existsSync(p)) throw new ModelLoadError(`--weights ${requested}: no such file in ${dir}`);
    return { weightsPath: p, reason: 'chosen with --weights' };
  }
  const index = path.join(dir, 'model.safetensors.index.json');
  if (existsSync(index)) return { weightsPath: index, reason: 'sharded checkpoint (model.safetensors.index.json)' };
  const files = readdirSync(dir).filter((f) => f.endsWith('.safetensors')).sort();
  if (files.length === 0) {
    const bins = readdirSync(dir).filter((f) => f.endsWith('.bin') || f.endsWith('.pt'));
    const hint = bins.length ? ` It has ${bins.join(', ')}: convert with 'qllama convert ${dir} --to safetensors'.` : '';
    throw new ModelLoadError(`${dir} holds no *.safetensors weights.${hint}`);
  }
  if (files.length === 1) return { weightsPath: path.join(dir, files[0]), reason: 'the only .safetensors file' };
  return {
    weightsPath: path.join(dir, files[0]),
    reason: `first of ${files.length} .safetensors files in name order (${files.join(', ')}); pick another with --weights`,
  };
}
