import { chmod, copyFile, readdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { LlamaConfig } from '../formats/hfConfig.js';
import { floatToHalf, SafetensorsFile, toFloat32 } from '../formats/safetensors.js';
import { writeSafetensors, type TensorSpec } from '../formats/safetensorsWriter.js';
import type { WeightStore } from '../formats/weightStore.js';
import type { QuantizeSettings } from './types.js';

/**
 * The output folder's contents, as TheBloke's GPTQ-for-LLaMa repos hold them: one
 * `<name>-GPTQ-4bit-128g.<compat.no-act-order|latest.act-order>.safetensors` with the packed
 * linears, fp16 embeddings, norms and lm_head (tensors in name order, metadata {format: pt});
 * the source folder's side files (config, tokenizer, generation config); an AutoGPTQ-style
 * quantize_config.json so loaders need not infer the settings.
 */
export function outputFileName(name: string, s: QuantizeSettings): string {
  const group = s.groupSize === -1 ? '' : `-${s.groupSize}g`;
  return `${name}-GPTQ-${s.bits}bit${group}.${s.actOrder ? 'latest.act-order' : 'compat.no-act-order'}.safetensors`;
}

/** Source files that are weights (replaced by ours) or settings we rewrite. */
function isWeightsFile(f: string): boolean {
  return /\.(safetensors|bin|pt|pth|ckpt|gguf)$/.test(f) || f.endsWith('.index.json') || f === 'quantize_config.json';
}

export interface SaveJob {
  readonly workDir: string;
  readonly sourceDir: string;
  readonly source: WeightStore;
  readonly config: LlamaConfig;
  readonly fileName: string;
  /** per layer, the state file holding its packed tensors */
  readonly layerFiles: readonly string[];
  readonly settings: QuantizeSettings;
  readonly trueSequential: boolean;
}

export async function writeQuantizedModel(job: SaveJob): Promise<string> {
  const { source, config } = job;
  const layers = job.layerFiles.map((f) => SafetensorsFile.open(f));
  try {
    const fromLayer = new Map<string, SafetensorsFile>();
    const specs: TensorSpec[] = [];
    for (const file of layers) {
      for (const name of file.names()) {
        const e = file.entry(name);
        specs.push({ name, dtype: e.dtype, shape: e.shape });
        fromLayer.set(name, file);
      }
    }
    const fp16: string[] = ['model.embed_tokens.weight', 'model.norm.weight'];
    if (source.has('lm_head.weight')) fp16.push('lm_head.weight');
    for (let l = 0; l < config.numLayers; l++) fp16.push(`model.layers.${l}.input_layernorm.weight`, `model.layers.${l}.post_attention_layernorm.weight`);
    for (const name of fp16) specs.push({ name, dtype: 'F16', shape: source.entry(name).shape });
    specs.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

    const produce = (name: string): Uint8Array => {
      const layer = fromLayer.get(name);
      if (layer) return layer.read(name);
      const e = source.entry(name);
      const buf = source.read(name);
      if (e.dtype === 'F16') return buf;
      const f = toFloat32(e.dtype, buf);
      const half = new Uint16Array(f.length);
      for (let i = 0; i < f.length; i++) half[i] = floatToHalf(f[i]);
      return new Uint8Array(half.buffer);
    };
    const out = path.join(job.workDir, job.fileName);
    await writeSafetensors(out, specs, produce, { format: 'pt' });
    await copySideFiles(job.sourceDir, job.workDir);
    await writeFile(path.join(job.workDir, 'quantize_config.json'), `${JSON.stringify(quantizeConfigJson(job), null, 2)}\n`);
    return out;
  } finally {
    for (const f of layers) f.close();
  }
}

function quantizeConfigJson(job: SaveJob): Record<string, unknown> {
  const s = job.settings;
  return {
    bits: s.bits,
    group_size: s.groupSize,
    damp_percent: s.damp,
    desc_act: s.actOrder,
    static_groups: s.staticGroups,
    sym: s.sym,
    true_sequential: job.trueSequential,
    model_file_base_name: job.fileName.replace(/\.safetensors$/, ''),
  };
}

async function copySideFiles(from: string, to: string): Promise<void> {
  for (const f of await readdir(from)) {
    if (isWeightsFile(f) || f.startsWith('.')) continue;
    const src = path.join(from, f);
    if (!(await stat(src)).isFile()) continue;
    await copyFile(src, path.join(to, f));
    await chmod(path.join(to, f), 0o644); // a read-only source (a shared fixture, a cache) must not make the output read-only

  }
}
