/**
 * `qllama synth`: a GPTQ checkpoint of real LLaMA shapes with random weights, for benchmarks
 * (the GPU machine has no network). Layout as GPTQ-for-LLaMa / AutoGPTQ write it: qweight
 * [K·bits/32, N] int32, qzeros [G, N·bits/32] (all zeros stored as 2^(bits−1) − 1), scales
 * [G, N] fp16, g_idx [K] (shuffled for --act-order); fp16 embeddings, norms and lm_head.
 * Act-order: one column order per distinct input, as GPTQ-for-LLaMa leaves it — q/k/v read the same
 * x, so their Hessians and hence their descending-diag(H) orders are equal, and likewise gate/up
 * (../shared's tiny-vicuna act-order file has equal g_idx there; test/unit/synth.test.ts checks both).
 */
import { copyFileSync, existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { UsageError } from '../errors.js';
import { floatToHalf } from '../formats/half.js';
import { tensorByteSize, writeSafetensors, type TensorSpec } from '../formats/safetensorsWriter.js';
import { Xorshift, halfTable } from './random.js';
import { SHAPES, type LlamaShape } from './shapes.js';
import { Tokenizer } from '../tokenizer/index.js';

export interface SynthOptions {
  readonly shape: LlamaShape;
  readonly bits: 2 | 3 | 4 | 8;
  readonly groupSize: number; // -1: one group
  readonly actOrder: boolean;
  readonly out: string;
  readonly seed?: number;
}

const USAGE = 'qllama synth --shape llama-7b|llama-13b|llama-33b [--bits 4] [--groupsize 128] [--act-order] --out DIR';
const TOKENIZER_FILES = ['tokenizer.model', 'tokenizer_config.json', 'special_tokens_map.json'];

export async function runSynth(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      shape: { type: 'string' }, bits: { type: 'string', default: '4' }, groupsize: { type: 'string', default: '128' },
      'act-order': { type: 'boolean', default: false }, out: { type: 'string' }, seed: { type: 'string' },
    },
  });
  const shape = SHAPES[values.shape ?? ''];
  if (!shape) throw new UsageError(`--shape must be one of ${Object.keys(SHAPES).join(', ')}\nusage: ${USAGE}`);
  const bits = Number(values.bits);
  if (bits !== 2 && bits !== 3 && bits !== 4 && bits !== 8) throw new UsageError(`--bits must be 2, 3, 4 or 8, got ${values.bits}`);
  const groupSize = Number(values.groupsize);
  if (!Number.isInteger(groupSize) || (groupSize !== -1 && (groupSize <= 0 || shape.hidden % groupSize || shape.ffn % groupSize))) {
    throw new UsageError(`--groupsize must be -1 or divide ${shape.hidden} and ${shape.ffn}, got ${values.groupsize}`);
  }
  if (!values.out) throw new UsageError(`--out DIR is required\nusage: ${USAGE}`);
  const t0 = performance.now();
  const bytes = await synthesize({ shape, bits, groupSize, actOrder: values['act-order'] ?? false, out: values.out, seed: Number(values.seed ?? 1) });
  console.log(`synth: wrote ${values.shape} ${bits}-bit g${groupSize}${values['act-order'] ? ' act-order' : ''} to ${values.out} ` +
    `(${(bytes / 1e9).toFixed(2)} GB in ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  return 0;
}

/** A tensor to write and how to fill it (called once, with the whole tensor's elements). */
interface SynthTensor extends TensorSpec {
  readonly dtype: 'F16' | 'I32';
  readonly fill: (out: Uint16Array | Int32Array) => void;
}

/** Writes config.json, quantize_config.json, tokenizer files and model.safetensors; returns the weights' size. */
export async function synthesize(o: SynthOptions): Promise<number> {
  const { shape: s, bits } = o;
  mkdirSync(o.out, { recursive: true });
  writeFileSync(path.join(o.out, 'config.json'), JSON.stringify({
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: s.hidden, intermediate_size: s.ffn,
    num_hidden_layers: s.layers, num_attention_heads: s.heads, num_key_value_heads: s.kvHeads ?? s.heads, vocab_size: s.vocab,
    rms_norm_eps: 1e-6, max_position_embeddings: 2048, bos_token_id: 1, eos_token_id: 2, pad_token_id: 0,
    hidden_act: 'silu', tie_word_embeddings: false, torch_dtype: 'float16', rope_theta: 10000.0,
  }, null, 2));
  writeFileSync(path.join(o.out, 'quantize_config.json'), JSON.stringify({
    bits, group_size: o.groupSize, desc_act: o.actOrder, sym: false, true_sequential: true,
  }, null, 2));
  copyTokenizer(o.out);
  const rng = new Xorshift(o.seed ?? 1);
  const tensors: SynthTensor[] = [];
  const scaleTable = halfTable(0.001, 0.003), embedTable = halfTable(-0.04, 0.04);
  const one = floatToHalf(1);
  const f16 = (name: string, shape: number[], table: Uint16Array | null): SynthTensor => ({
    name, dtype: 'F16', shape,
    fill: (out) => (table ? rng.fillHalves(out as Uint16Array, table) : (out as Uint16Array).fill(one)),
  });
  const zeroStored = (1 << (bits - 1)) - 1;
  const groupSizeFor = (K: number): number => (o.groupSize === -1 ? K : o.groupSize);
  const gptq = (name: string, N: number, gIdx: Int32Array): void => {
    const K = gIdx.length;
    const G = K / groupSizeFor(K);
    const zeros = packedZeros(N, bits, zeroStored);
    tensors.push(
      { name: `${name}.qweight`, dtype: 'I32', shape: [(K * bits) / 32, N], fill: (out) => rng.fillWords(out as Int32Array) },
      { name: `${name}.qzeros`, dtype: 'I32', shape: [G, (N * bits) / 32], fill: (out) => { for (let i = 0; i < out.length; i++) out[i] = zeros[i % zeros.length]; } },
      { name: `${name}.scales`, dtype: 'F16', shape: [G, N], fill: (out) => rng.fillHalves(out as Uint16Array, scaleTable) },
      { name: `${name}.g_idx`, dtype: 'I32', shape: [K], fill: (out) => (out as Int32Array).set(gIdx) },
    );
  };
  tensors.push(f16('model.embed_tokens.weight', [s.vocab, s.hidden], embedTable));
  for (let l = 0; l < s.layers; l++) {
    const p = `model.layers.${l}`;
    const order = (K: number): Int32Array => groupIndex(K, groupSizeFor(K), o.actOrder, rng);
    const qkvOrder = order(s.hidden), gateUpOrder = order(s.hidden);
    const kvWidth = ((s.kvHeads ?? s.heads) * s.hidden) / s.heads;
    gptq(`${p}.self_attn.q_proj`, s.hidden, qkvOrder);
    for (const n of ['k_proj', 'v_proj']) gptq(`${p}.self_attn.${n}`, kvWidth, qkvOrder);
    gptq(`${p}.self_attn.o_proj`, s.hidden, order(s.hidden));
    gptq(`${p}.mlp.gate_proj`, s.ffn, gateUpOrder);
    gptq(`${p}.mlp.up_proj`, s.ffn, gateUpOrder);
    gptq(`${p}.mlp.down_proj`, s.hidden, order(s.ffn));
    tensors.push(f16(`${p}.input_layernorm.weight`, [s.hidden], null), f16(`${p}.post_attention_layernorm.weight`, [s.hidden], null));
  }
  // lm_head rows past the copied tokenizer's pieces are zero: LLaMA shapes have 32,000 ids and the embedded
  // tokenizer 4,096, so with random rows there `generate` and `chat` on a synthetic model would mostly pick ids
  // that have no text. A zero row's logit is 0, below the largest of 4,096 random ones, so greedy decoding
  // stays within the tokenizer. The bytes read per token are the same.
  const pieces = (await Tokenizer.fromModelDir(o.out)).vocabSize;
  const lmHead = f16('lm_head.weight', [s.vocab, s.hidden], embedTable);
  tensors.push(f16('model.norm.weight', [s.hidden], null), {
    ...lmHead, fill: (out) => {
      lmHead.fill(out);
      if (pieces < s.vocab) (out as Uint16Array).fill(0, pieces * s.hidden);
    },
  });
  // The writer asks for one tensor at a time and has written it before asking for the next, so
  // every tensor is filled into one reused buffer: memory ≈ the largest tensor (the embedding or
  // lm_head: 330 MB for 13B, 430 MB for 33B), and no per-tensor garbage over a 7-20 GB file.
  const byName = new Map(tensors.map((t) => [t.name, t]));
  let scratch = new ArrayBuffer(0);
  const file = path.join(o.out, 'model.safetensors');
  await writeSafetensors(file, tensors, (name) => {
    const t = byName.get(name) as SynthTensor;
    const size = tensorByteSize(t);
    if (scratch.byteLength < size) scratch = new ArrayBuffer(size);
    t.fill(t.dtype === 'F16' ? new Uint16Array(scratch, 0, size / 2) : new Int32Array(scratch, 0, size / 4));
    return new Uint8Array(scratch, 0, size);
  }, { format: 'pt', qllama: 'synth (random weights)' });
  return statSync(file).size;
}

/** One row of qzeros: every column's zero stored as `stored`, packed LSB first. */
function packedZeros(N: number, bits: number, stored: number): Int32Array {
  const words = new Int32Array((N * bits) / 32);
  for (let n = 0; n < N; n++) {
    const bit = n * bits, w = bit >>> 5, sh = bit & 31;
    words[w] |= stored << sh;
    if (sh + bits > 32) words[w + 1] |= stored >>> (32 - sh);
  }
  return words;
}

/** g_idx: i / gs, or (act-order) the groups of a random column order, as GPTQ's desc_act leaves them. */
function groupIndex(K: number, gs: number, actOrder: boolean, rng: Xorshift): Int32Array {
  const g = new Int32Array(K);
  if (!actOrder) {
    for (let i = 0; i < K; i++) g[i] = Math.floor(i / gs);
    return g;
  }
  const order = Int32Array.from({ length: K }, (_, i) => i);
  for (let i = K - 1; i > 0; i--) {
    const j = (rng.next() >>> 0) % (i + 1);
    const t = order[i]; order[i] = order[j]; order[j] = t;
  }
  for (let i = 0; i < K; i++) g[order[i]] = Math.floor(i / gs);
  return g;
}

function copyTokenizer(out: string): void {
  const src = fileURLToPath(new URL('../../../models/tiny-vicuna-4k/', import.meta.url));
  for (const f of TOKENIZER_FILES) if (existsSync(path.join(src, f))) copyFileSync(path.join(src, f), path.join(out, f));
}
