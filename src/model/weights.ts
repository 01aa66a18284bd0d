import type { Backend, EmbeddingWeight, LinearHost, LinearUploadOptions, LinearWeight, VectorWeight } from '../backends/backend.js';
import { groupOrder, isIdentity } from '../formats/actOrder.js';
import { finishGptqLinear, planGptqLinear, type GptqPlan, type QuantizeConfig } from '../formats/gptq.js';
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

/** Seconds a load spent, by phase (filled in when passed; benchmarks read it). */
export interface LoadProfile {
  /** config, headers, the GPTQ probe (discoverModel) and opening the weights */
  headerS: number;
  /** the main thread waiting for tensor reads (reads overlapped with parsing or uploads do not count) */
  readWaitS: number;
  /** checks and conversions of read tensors (GPTQ g_idx/qzeros checks, dtype conversions) */
  parseS: number;
  /** inside the backend's upload calls */
  uploadS: number;
}

/** Bytes of tensor reads kept in flight ahead of the tensor being uploaded (about one 13B layer and a half). */
const PREFETCH_BYTES = 384 << 20;

/** One upload: the tensors it reads and what to do with their bytes. */
interface Unit {
  readonly names: readonly string[];
  readonly bytes: number;
  /** build the host data from the bytes (in `names` order) and upload it */
  readonly bind: (bytes: readonly Uint8Array[]) => void;
}

/**
 * Reads every parameter of a Hugging Face LLaMA checkpoint (fp16 or GPTQ linears, decided per
 * tensor by the presence of `.qweight`) from `store` and uploads it, tensor by tensor in layer
 * order. Every header-level check (presence, dtype, shape) runs before the first read, so a
 * mismatched file fails before any upload. Reads go through the thread pool in parallel chunks,
 * up to PREFETCH_BYTES ahead of the upload, so the disk (page cache) copies of the next tensors
 * overlap the checks and uploads of this one; host memory holds about PREFETCH_BYTES of weights
 * at once, never the file. When the backend declares `uploadCopiesHostData` (its upload calls copy
 * the data before returning and keep no reference), the read buffers are recycled: no fresh memory
 * per tensor, which on Linux costs a page fault per 4 KiB and is most of a page-cached read.
 */
export async function bindLlamaWeights(
  store: WeightStore, config: LlamaConfig, backend: Backend, quantizeConfig?: QuantizeConfig, profile?: LoadProfile,
): Promise<LlamaWeights> {
  const dim = config.hiddenSize;
  const headDim = dim / config.numHeads;
  const kvDim = config.numKvHeads * headDim;
  const ffn = config.intermediateSize;
  const prof: LoadProfile = profile ?? { headerS: 0, readWaitS: 0, parseS: 0, uploadS: 0 };
  const size = (name: string): number => store.entry(name).byteLength;
  const units: Unit[] = [];
  const timed = <T>(phase: 'parseS' | 'uploadS', f: () => T): T => {
    const t0 = performance.now();
    try {
      return f();
    } finally {
      prof[phase] += (performance.now() - t0) / 1000;
    }
  };
  const upload = (host: LinearHost, options?: LinearUploadOptions): LinearWeight => timed('uploadS', () => backend.uploadLinear(host, options));
  const ordered = backend.supportsUploadOrder === true;

  // uploads land in these slots as units are bound; runUnits binds every unit or throws
  const linears: LinearWeight[] = [];
  const vectors: VectorWeight[] = [];
  let embed: EmbeddingWeight | undefined;

  /**
   * Plans the linear `prefix` (checking its headers now); returns the slot its upload will fill.
   * `optionsFor` picks the upload options once the host data is known (bind time).
   */
  const linear = (prefix: string, inF: number, outF: number, optionsFor?: (host: LinearHost) => LinearUploadOptions | undefined): number => {
    const slot = linears.length;
    linears.push({ inFeatures: inF, outFeatures: outF }); // placeholder until bound
    const done = (w: LinearWeight): void => { linears[slot] = w; };
    if (store.has(`${prefix}.qweight`)) {
      const plan = planGptqLinear(store, prefix, inF, outF, quantizeConfig);
      const names = gptqNames(plan);
      units.push({
        names, bytes: names.reduce((a, n) => a + size(n), 0),
        bind: (b) => {
          const host = timed('parseS', () => finishGptqLinear(plan, gptqBytes(plan, b)));
          done(upload(host, optionsFor?.(host)));
        },
      });
      return slot;
    }
    const wName = `${prefix}.weight`, bName = `${prefix}.bias`;
    checkShape(store, wName, [outF, inF]);
    const hasBias = store.has(bName);
    if (hasBias) checkShape(store, bName, [outF]);
    const names = hasBias ? [wName, bName] : [wName];
    units.push({
      names, bytes: names.reduce((a, n) => a + size(n), 0),
      bind: (b) => {
        const host = timed('parseS', (): LinearHost => ({
          kind: 'dense', inFeatures: inF, outFeatures: outF, data: toHalf(store, wName, b[0]), bias: hasBias ? toHalf(store, bName, b[1]) : undefined,
        }));
        done(upload(host, optionsFor?.(host)));
      },
    });
    return slot;
  };
  const vector = (name: string, length: number): number => {
    const slot = vectors.length;
    vectors.push({ length }); // placeholder until bound
    const done = (w: VectorWeight): void => { vectors[slot] = w; };
    checkShape(store, name, [length]);
    units.push({
      names: [name], bytes: size(name),
      bind: (b) => {
        const data = timed('parseS', () => toFloat32(store.entry(name).dtype, b[0]));
        done(timed('uploadS', () => backend.uploadVector(data)));
      },
    });
    return slot;
  };

  const layerSlots: Record<keyof LayerWeights, number>[] = [];
  for (let l = 0; l < config.numLayers; l++) {
    const p = `model.layers.${l}`;
    const attn = {
      attnNorm: vector(`${p}.input_layernorm.weight`, dim),
      q: linear(`${p}.self_attn.q_proj`, dim, dim),
      k: linear(`${p}.self_attn.k_proj`, dim, kvDim),
      v: linear(`${p}.self_attn.v_proj`, dim, kvDim),
      o: linear(`${p}.self_attn.o_proj`, dim, dim),
      mlpNorm: vector(`${p}.post_attention_layernorm.weight`, dim),
    };
    if (ordered) {
      // down is planned (so read and bound) before gate and up: its group order decides how they upload
      const mlp = mlpInDownOrder();
      const down = linear(`${p}.mlp.down_proj`, ffn, dim, mlp.down);
      layerSlots.push({ ...attn, gate: linear(`${p}.mlp.gate_proj`, dim, ffn, mlp.gateUp), up: linear(`${p}.mlp.up_proj`, dim, ffn, mlp.gateUp), down });
    } else {
      layerSlots.push({ ...attn, gate: linear(`${p}.mlp.gate_proj`, dim, ffn), up: linear(`${p}.mlp.up_proj`, dim, ffn), down: linear(`${p}.mlp.down_proj`, ffn, dim) });
    }
  }
  const embedName = 'model.embed_tokens.weight';
  checkShape(store, embedName, [config.vocabSize, dim]);
  const lmHeadName = store.has('lm_head.weight') || !config.tieWordEmbeddings ? 'lm_head' : undefined;
  // a tied lm_head is the embedding's data: one unit, so its bytes are released after both uploads
  const tiedSlot = linears.length;
  if (!lmHeadName) linears.push({ inFeatures: dim, outFeatures: config.vocabSize });
  units.push({
    names: [embedName], bytes: size(embedName),
    bind: (b) => {
      const half = timed('parseS', () => toHalf(store, embedName, b[0]));
      embed = timed('uploadS', () => backend.uploadEmbedding(half, config.vocabSize, dim));
      if (!lmHeadName) linears[tiedSlot] = upload({ kind: 'dense', inFeatures: dim, outFeatures: config.vocabSize, data: half });
    },
  });
  const lmHead = lmHeadName ? linear(lmHeadName, dim, config.vocabSize) : tiedSlot;
  const norm = vector('model.norm.weight', dim);

  const recycle = 'uploadCopiesHostData' in backend && backend.uploadCopiesHostData === true;
  await runUnits(store, units, recycle ? new BufferPool() : undefined, prof);
  if (!embed) throw new Error('bindLlamaWeights: the embedding unit was not bound'); // unreachable: runUnits binds every unit or throws
  const layers = layerSlots.map((s): LayerWeights => {
    // (the CUDA backend lays gate's and up's arrays side by side for its fused prompt kernel)
    const [gate, up] = backend.pairLinears?.(linears[s.gate], linears[s.up]) ?? [linears[s.gate], linears[s.up]];
    return {
      attnNorm: vectors[s.attnNorm], q: linears[s.q], k: linears[s.k], v: linears[s.v], o: linears[s.o],
      mlpNorm: vectors[s.mlpNorm], gate, up, down: linears[s.down],
    };
  });
  for (const l of layers) {
    backend.declareInputNorm?.(l.attnNorm, [l.q, l.k, l.v]);
    backend.declareInputNorm?.(l.mlpNorm, [l.gate, l.up]);
  }
  return { embed, layers, norm: vectors[norm], lmHead: linears[lmHead] };
}

/**
 * Upload options of one MLP for a backend that supports them: when down_proj is act-order GPTQ, gate and
 * up are uploaded with their outputs in down's group order, so silu(gate)·up comes out in that order and
 * down reads its x linearly (no gather through its permutation). The model is unchanged: the
 * intermediate vector is only permuted, and only down reads it. Down must be bound before gate and up
 * (weights are bound in planning order); gate and up both have down's input size as outputs
 * (checked shapes [ffn, dim] vs [dim, ffn]), GPTQ or dense alike.
 */
function mlpInDownOrder(): { down: (h: LinearHost) => LinearUploadOptions | undefined; gateUp: () => LinearUploadOptions | undefined } {
  let order: Int32Array | undefined;
  return {
    down: (h) => {
      if (h.kind !== 'gptq') return undefined;
      const o = groupOrder(h.gIdx);
      if (isIdentity(o)) return undefined;
      order = o;
      return { inputInGroupOrder: true };
    },
    gateUp: () => (order ? { outputOrder: order } : undefined),
  };
}

/** Reads units' tensors up to PREFETCH_BYTES ahead and binds them in order; on failure, waits for reads in flight (the store is closed next). */
async function runUnits(store: WeightStore, units: readonly Unit[], pool: BufferPool | undefined, prof: LoadProfile): Promise<void> {
  const pending: (Promise<Uint8Array[]> | undefined)[] = [];
  let issued = 0, inFlight = 0;
  const issue = (bound: number): void => {
    while (issued < units.length && (issued === bound || inFlight + units[issued].bytes <= PREFETCH_BYTES)) {
      const u = units[issued++];
      inFlight += u.bytes;
      const p = Promise.all(u.names.map((n) => store.readAsync(n, pool?.take(store.entry(n).byteLength))));
      p.catch(() => {}); // handled when awaited; marks it handled if an earlier unit fails first
      pending.push(p);
    }
  };
  try {
    for (let i = 0; i < units.length; i++) {
      issue(i);
      const t0 = performance.now();
      const bytes = await (pending[i] as Promise<Uint8Array[]>);
      prof.readWaitS += (performance.now() - t0) / 1000;
      pending[i] = undefined;
      units[i].bind(bytes);
      inFlight -= units[i].bytes;
      pool?.give(bytes);
    }
  } catch (err) {
    await Promise.allSettled(pending.filter((p) => p !== undefined));
    throw err;
  }
}

/** Read buffers by byte length, reused once a backend that copies on upload is done with them. */
class BufferPool {
  private readonly free = new Map<number, Uint8Array[]>();

  take(bytes: number): Uint8Array {
    return this.free.get(bytes)?.pop() ?? Buffer.allocUnsafeSlow(bytes);
  }

  give(buffers: readonly Uint8Array[]): void {
    for (const b of buffers) {
      const list = this.free.get(b.byteLength);
      if (list) list.push(b);
      else this.free.set(b.byteLength, [b]);
    }
  }
}

function gptqNames(plan: GptqPlan): string[] {
  const n = plan.names;
  return [n.qweight, n.qzeros, n.scales, ...(n.gIdx ? [n.gIdx] : []), ...(n.bias ? [n.bias] : [])];
}

/** The bytes read for gptqNames(plan), by tensor. */
function gptqBytes(plan: GptqPlan, b: readonly Uint8Array[]): Parameters<typeof finishGptqLinear>[1] {
  const gIdx = plan.names.gIdx ? b[3] : undefined;
  const bias = plan.names.bias ? b[gIdx ? 4 : 3] : undefined;
  return { qweight: b[0], qzeros: b[1], scales: b[2], ...(gIdx ? { gIdx } : {}), ...(bias ? { bias } : {}) };
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

/** Any float tensor's bytes as raw fp16 bits (fp16 is viewed as is; bf16/f32 are rounded). */
function toHalf(store: WeightStore, name: string, buf: Uint8Array): Uint16Array {
  const dtype = store.entry(name).dtype;
  if (dtype === 'F16') return asUint16(buf);
  const f = toFloat32(dtype, buf);
  const out = new Uint16Array(f.length);
  for (let i = 0; i < f.length; i++) out[i] = floatToHalf(f[i]);
  return out;
}
