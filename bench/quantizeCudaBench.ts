/**
 * `npm run bench:quantize-cuda`: `qllama quantize --backend cuda` on a LLaMA-13B-shaped fp16 model
 * with random weights and only --layers decoder layers (default 2), written first to /tmp (random
 * fp16 from xorshift, one reused buffer per tensor, as `qllama synth` fills its checkpoints), with
 * GPTQ-for-LLaMa's 13B recipe: 128 × 2048 calibration tokens, 4-bit g128, act-order, true-sequential.
 * Calibration text: random words from a fixed list, encoded by models/tiny-vicuna-4k's tokenizer
 * (4096 ids, all valid rows of the 32000-row embedding), drawn as WikiText-2-style windows.
 * Prints per-layer seconds, the projected 40-layer time (setup and the final write counted once,
 * layers × 40), peak host RSS and peak GPU memory, and ends with one JSON line.
 * Flags: --layers N, --nsamples N, --seqlen N, --keep (leave the model in /tmp).
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { cudaAvailable } from '../src/backends/cuda/driver.js';
import { floatToHalf } from '../src/formats/half.js';
import { tensorByteSize, writeSafetensors, type TensorSpec } from '../src/formats/safetensorsWriter.js';
import { quantizeModel } from '../src/quantize/pipeline.js';
import { Xorshift, halfTable } from '../src/synth/random.js';
import { SHAPES } from '../src/synth/shapes.js';

const { values } = parseArgs({
  options: {
    layers: { type: 'string', default: '2' },
    nsamples: { type: 'string', default: '128' },
    seqlen: { type: 'string', default: '2048' },
    keep: { type: 'boolean', default: false },
  },
});
const layers = Number(values.layers), nsamples = Number(values.nsamples), seqlen = Number(values.seqlen);
const shape = { ...SHAPES['llama-13b'], layers };
const FULL_LAYERS = SHAPES['llama-13b'].layers;
const log = (line: string): void => { process.stdout.write(`${line}\n`); };
const gib = (b: number): number => Math.round((b / 1024 ** 3) * 100) / 100;
const TOKENIZER = fileURLToPath(new URL('../../models/tiny-vicuna-4k/', import.meta.url));

/** config.json, tokenizer files and model.safetensors of the 13B shape with `layers` layers. */
async function writeModel(dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const s = shape;
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify({
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: s.hidden, intermediate_size: s.ffn,
    num_hidden_layers: s.layers, num_attention_heads: s.heads, num_key_value_heads: s.heads, vocab_size: s.vocab,
    rms_norm_eps: 1e-6, max_position_embeddings: 2048, bos_token_id: 1, eos_token_id: 2, pad_token_id: 0,
    hidden_act: 'silu', tie_word_embeddings: false, torch_dtype: 'float16', rope_theta: 10000.0,
  }, null, 2));
  for (const f of ['tokenizer.model', 'tokenizer_config.json', 'special_tokens_map.json']) {
    if (existsSync(path.join(TOKENIZER, f))) copyFileSync(path.join(TOKENIZER, f), path.join(dir, f));
  }
  const rng = new Xorshift(13);
  const weights = halfTable(-0.02, 0.02), embed = halfTable(-0.04, 0.04);
  const one = floatToHalf(1);
  const tensors: (TensorSpec & { fill: (out: Uint16Array) => void })[] = [];
  const f16 = (name: string, dims: number[], table: Uint16Array | null): void => {
    tensors.push({ name, dtype: 'F16', shape: dims, fill: (out) => (table ? rng.fillHalves(out, table) : out.fill(one)) });
  };
  f16('model.embed_tokens.weight', [s.vocab, s.hidden], embed);
  for (let l = 0; l < s.layers; l++) {
    const p = `model.layers.${l}`;
    for (const n of ['q_proj', 'k_proj', 'v_proj', 'o_proj']) f16(`${p}.self_attn.${n}.weight`, [s.hidden, s.hidden], weights);
    f16(`${p}.mlp.gate_proj.weight`, [s.ffn, s.hidden], weights);
    f16(`${p}.mlp.up_proj.weight`, [s.ffn, s.hidden], weights);
    f16(`${p}.mlp.down_proj.weight`, [s.hidden, s.ffn], weights);
    f16(`${p}.input_layernorm.weight`, [s.hidden], null);
    f16(`${p}.post_attention_layernorm.weight`, [s.hidden], null);
  }
  f16('model.norm.weight', [s.hidden], null);
  f16('lm_head.weight', [s.vocab, s.hidden], embed);
  const byName = new Map(tensors.map((t) => [t.name, t]));
  let scratch = new ArrayBuffer(0);
  await writeSafetensors(path.join(dir, 'model.safetensors'), tensors, (name) => {
    const t = byName.get(name);
    if (!t) throw new Error(`unknown tensor ${name}`);
    const size = tensorByteSize(t);
    if (scratch.byteLength < size) scratch = new ArrayBuffer(size);
    t.fill(new Uint16Array(scratch, 0, size / 2));
    return new Uint8Array(scratch, 0, size);
  }, { format: 'pt' });
}

/** Random words, enough for nsamples × seqlen tokens with room to spare. */
function writeCalibrationText(file: string, tokens: number): void {
  const words = ('the of and to in a is that for it as was with be by on not he this are or his from at which but have an they you were ' +
    'her she there been one all we their has would when if so no will more other its time only new some could these two may first ' +
    'model layer weight quantization matrix error column group order sample token window calibration hessian gradient').split(' ');
  const rng = new Xorshift(5);
  const parts: string[] = [];
  for (let i = 0; i < tokens * 1.3; i++) parts.push(words[(rng.next() >>> 0) % words.length] + ((i % 17) === 16 ? '.\n' : ' '));
  writeFileSync(file, parts.join(''));
}

const work = mkdtempSync(path.join(tmpdir(), 'qllama-quantize-cuda-bench-'));
const modelDir = path.join(work, 'llama-13b-shaped');
const textFile = path.join(work, 'calibration.txt');
let exitCode = 0;
try {
  const probe = cudaAvailable();
  if (!probe.ok) throw new Error(`no CUDA GPU: ${probe.reason}`);
  const t0 = Date.now();
  await writeModel(modelDir);
  writeCalibrationText(textFile, nsamples * seqlen);
  const writeSeconds = (Date.now() - t0) / 1000;
  log(`wrote a LLaMA-13B-shaped fp16 model with ${layers} layer(s) to ${modelDir} in ${writeSeconds.toFixed(1)} s`);

  const layerStart: number[] = [];
  let writeStart = 0;
  let gpuPeak = 0;
  let device = '';
  const started = Date.now();
  const result = await quantizeModel({
    modelDir, outDir: path.join(work, 'out'), name: 'llama-13b-shaped', backend: 'cuda', trueSequential: true, rtn: false,
    settings: { bits: 4, groupSize: 128, actOrder: true, staticGroups: false, sym: false, damp: 0.01 },
    calibration: { file: textFile, kind: 'text', nsamples, seqlen, seed: 0 },
    log: (line) => {
      log(line);
      if (line.startsWith('writing ')) writeStart = Date.now();
      const peak = /peak device memory ([\d.]+) GiB/.exec(line);
      if (peak) gpuPeak = Number(peak[1]);
      const dev = /^cuda: (.+?), [\d.]+ GiB of device memory held/.exec(line);
      if (dev) device = dev[1];
    },
    onProgress: (p) => {
      if (layerStart[p.layer] === undefined) layerStart[p.layer] = Date.now();
    },
  });
  const seconds = (Date.now() - started) / 1000;
  const ends = [...layerStart.slice(1), writeStart || Date.now()];
  const perLayer = layerStart.map((t, l) => Math.round((ends[l] - t) / 10) / 100);
  perLayer.forEach((s, l) => log(`layer ${l}: ${s.toFixed(2)} s`));
  const steady = perLayer.length > 1 ? perLayer.slice(1) : perLayer; // layer 0 pays for module loading and first allocations
  const mean = steady.reduce((a, b) => a + b, 0) / steady.length;
  const fixed = seconds - perLayer.reduce((a, b) => a + b, 0);
  const projected = fixed + FULL_LAYERS * mean;
  const rss = process.resourceUsage().maxRSS * 1024;
  log(`${layers} layer(s) in ${seconds.toFixed(1)} s (setup and write ${fixed.toFixed(1)} s); ${FULL_LAYERS}-layer projection ${projected.toFixed(0)} s ` +
    `(${(projected / 60).toFixed(1)} min, target 15 min); peak host RSS ${gib(rss)} GiB; peak GPU memory ${gpuPeak} GiB (quantizer allocations)`);
  process.stdout.write(`${JSON.stringify({
    bench: 'quantize-cuda', device, shape: 'llama-13b', layers, nsamples, seqlen, bits: 4, groupSize: 128, actOrder: true, trueSequential: true,
    modelWriteS: writeSeconds, quantizeS: seconds, perLayerS: perLayer, steadyLayerS: Math.round(mean * 100) / 100, fixedS: Math.round(fixed * 10) / 10,
    projected40LayerS: Math.round(projected), peakHostRssGiB: gib(rss), peakGpuGiB: gpuPeak, file: path.basename(result.file),
  })}\n`);
} catch (e) {
  const err = e instanceof Error ? e : new Error(String(e));
  process.stderr.write(`quantize-cuda bench failed: ${err.name}: ${err.message}\n${err.stack ?? ''}\n`);
  process.stdout.write(`${JSON.stringify({ bench: 'quantize-cuda', error: `${err.name}: ${err.message}` })}\n`);
  exitCode = 1;
} finally {
  if (!values.keep) rmSync(work, { recursive: true, force: true });
}
process.exit(exitCode);
