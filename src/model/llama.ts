import type { Activation, Backend, DeviceSampling, KvCache, LinearWeight } from '../backends/backend.js';
import { CpuBackend } from '../backends/cpu/cpuBackend.js';
import { ContextOverflowError } from '../errors.js';
import type { LlamaConfig } from '../formats/hfConfig.js';
import { discoverModel, type DiscoveredModel } from '../formats/modelFolder.js';
import { WeightStore } from '../formats/weightStore.js';
import { hostArgmax, type BatchedLm, type DecodeRow, type RowResult } from './batch.js';
import type { CausalLm } from './causalLm.js';
import { allocRunState, type RunState } from './runState.js';
import { bindLlamaWeights, type LlamaWeights, type LoadProfile } from './weights.js';

export interface LlamaModelOptions {
  /** compute backend (default: the plain CPU backend) */
  readonly backend?: Backend;
  /** weights file inside the folder, when it holds several */
  readonly weights?: string;
  /** context length (default and maximum: max_position_embeddings) */
  readonly contextLength?: number;
  /** prompt tokens processed per forward chunk */
  readonly chunkRows?: number;
  /**
   * sequence slots, each with its own KV cache (default 1): slots decode together through
   * `decodeBatch`; slot 0 is the one `forward` & co. use when no slot is given
   */
  readonly sequences?: number;
  /** filled with the load's seconds by phase (benchmarks) */
  readonly profile?: LoadProfile;
}

/** Where a pass's new K/V rows go: one sequence from startPos on, or one row per sequence. */
type KvTarget =
  | { readonly kind: 'chunk'; readonly cache: KvCache; readonly startPos: number }
  | { readonly kind: 'rows'; readonly caches: readonly KvCache[]; readonly positions: Int32Array };

/**
 * A LLaMA decoder (RMSNorm, rotary attention with KV cache and grouped KV heads, SwiGLU MLP,
 * untied lm_head) running on any `Backend`. It holds `sequences` KV caches (slots, default 1);
 * every forward takes an optional slot (default 0), and `decodeBatch` runs the next token of
 * several slots as one pass whose linear layers see one row per slot.
 */
export class LlamaModel implements CausalLm, BatchedLm, AsyncDisposable {
  readonly vocabSize: number;
  readonly contextLength: number;
  private readonly headDim: number;
  /** decodeBatch's per-row scratch, sized `sequences` once (a step allocates next to nothing) */
  private readonly batchIds: Int32Array;
  private readonly batchPositions: Int32Array;
  private readonly batchCaches: KvCache[];

  private constructor(
    readonly info: DiscoveredModel,
    readonly backend: Backend,
    private readonly weights: LlamaWeights,
    private readonly caches: readonly KvCache[],
    private readonly state: RunState,
    /** decodeBatch's activations: `state` itself when it has a row per slot */
    private readonly batchState: RunState,
    /** [1, vocab]: one row's logits, for a device argmax / sample of a batched row */
    private readonly pickRow: Activation | null,
    contextLength: number,
  ) {
    this.vocabSize = info.config.vocabSize;
    this.contextLength = contextLength;
    this.headDim = info.config.hiddenSize / info.config.numHeads;
    this.batchIds = new Int32Array(caches.length);
    this.batchPositions = new Int32Array(caches.length);
    this.batchCaches = [...caches];
  }

  /** Sequence slots (KV caches) this model holds. */
  get sequences(): number {
    return this.caches.length;
  }

  /** Prompt rows one forward chunk runs (LlamaModelOptions.chunkRows, capped by the context). */
  get chunkRows(): number {
    return this.state.rows;
  }

  get config(): LlamaConfig {
    return this.info.config;
  }

  static async create(dir: string, options: LlamaModelOptions = {}): Promise<LlamaModel> {
    const t0 = performance.now();
    const info = discoverModel(dir, { weights: options.weights });
    const { config } = info;
    const backend: Backend = options.backend ?? new CpuBackend();
    const contextLength = Math.min(options.contextLength ?? config.maxPositionEmbeddings, config.maxPositionEmbeddings);
    const store = WeightStore.open(info.weightsPath);
    if (options.profile) options.profile.headerS += (performance.now() - t0) / 1000;
    let weights: LlamaWeights;
    try {
      weights = await bindLlamaWeights(store, config, backend, info.quantizeConfig, options.profile);
    } finally {
      store.close();
    }
    const sequences = options.sequences ?? 1;
    if (!Number.isInteger(sequences) || sequences < 1) throw new RangeError(`sequences must be an integer ≥ 1, got ${sequences}`);
    const headDim = config.hiddenSize / config.numHeads;
    // one KV cache per slot: memory grows linearly with `sequences`
    const caches = Array.from({ length: sequences }, () => backend.allocKvCache(config.numLayers, contextLength, config.numKvHeads, headDim));
    const state = allocRunState(backend, config, Math.min(options.chunkRows ?? backend.preferredChunkRows ?? 256, contextLength));
    const batchState = state.logitsRows >= sequences ? state : allocRunState(backend, config, sequences);
    const pickRow = sequences > 1 && (backend.argmax || backend.sample) ? backend.allocActivation(1, config.vocabSize) : null;
    return new LlamaModel(info, backend, weights, caches, state, batchState, pickRow, contextLength);
  }

  /** Logits of the last fed position, `[vocab]`. */
  async forward(tokens: readonly number[], startPos: number, slot = 0): Promise<Float32Array> {
    this.lastLogits(tokens, startPos, slot);
    return this.backend.readActivation(this.state.logits, 1);
  }

  /** argmax of the last position's logits; on backends with a device argmax only the id comes back. */
  async forwardArgmax(tokens: readonly number[], startPos: number, slot = 0): Promise<number> {
    this.lastLogits(tokens, startPos, slot);
    const { backend, state } = this;
    if (backend.argmax) return backend.argmax(state.logits);
    return hostArgmax(backend.readActivation(state.logits, 1));
  }

  /**
   * The next id drawn where the logits are (Backend.sample, a launch after the decode graph), or the
   * logits row when the backend has no device sampler or cannot decide this one.
   */
  async forwardSample(tokens: readonly number[], startPos: number, sampling: DeviceSampling, slot = 0): Promise<number | Float32Array> {
    this.lastLogits(tokens, startPos, slot);
    const { backend, state } = this;
    return backend.sample?.(state.logits, sampling) ?? backend.readActivation(state.logits, 1);
  }

  /**
   * One decode step of several sequences: row t feeds `rows[t].token` at `rows[t].pos` of slot
   * `rows[t].slot` (slots distinct, each cache holding positions 0..pos-1), in ONE pass whose linear
   * layers run with rows = B (each weight read once for the B tokens); attention and the KV writes
   * are per row (Backend.ropeRows / writeKvRows / attentionRows). Returns, in row order, what each
   * row's `pick` asks for. The pass goes through Backend.decodeStep with the step's rows, so a backend
   * may record it once per row count and replay it (the CUDA backend does). Up to
   * Backend.decodeRowsByGraph rows (default 1) go one after another through their slots' one-sequence
   * graphs instead, where the backend has graphs.
   */
  async decodeBatch(rows: readonly DecodeRow[]): Promise<RowResult[]> {
    const B = rows.length;
    if (B === 0) return [];
    if (B > this.caches.length) throw new RangeError(`decodeBatch: ${B} rows but the model has ${this.caches.length} sequence slots`);
    const ids = this.batchIds.subarray(0, B), positions = this.batchPositions.subarray(0, B);
    const caches = this.batchCaches;
    caches.length = B;
    for (let t = 0; t < B; t++) {
      const r = rows[t];
      this.checkSlot(r.slot);
      for (let u = 0; u < t; u++) if (rows[u].slot === r.slot) throw new RangeError(`decodeBatch: slot ${r.slot} appears twice`);
      this.checkRange(1, r.pos);
      ids[t] = this.checkToken(r.token);
      positions[t] = r.pos;
      caches[t] = this.caches[r.slot];
    }
    // A lone sequence (or up to decodeRowsByGraph) takes the one-sequence path: on a backend with graphs it replays
    // its slot's captured decode graph (H200, 13B: 390 tok/s), where an eager batched pass of one row ran about 265
    // (bench/cudaBatchBench.ts).
    if (this.backend.runGraph && B <= (this.backend.decodeRowsByGraph ?? 1)) {
      const results: RowResult[] = [];
      for (const r of rows) results.push(await this.decodeOne(r));
      return results;
    }
    const { backend: b, batchState: s, config: c } = this;
    const step = (): void => {
      this.layers(s, ids, B, { kind: 'rows', caches, positions });
      b.rmsNorm(s.xb, s.x, this.weights.norm, c.rmsNormEps, B);
      b.linear(s.logits, s.xb, this.weights.lmHead, B); // [B, vocab]
    };
    if (b.decodeStep) b.decodeStep(step, { ids, positions, caches });
    else step();
    return this.pickRows(rows);
  }

  /** One row of decodeBatch through forward / forwardArgmax / forwardSample on its slot. */
  private decodeOne(r: DecodeRow): Promise<RowResult> {
    const pick = r.pick ?? { kind: 'logits' }, tokens = [r.token];
    if (pick.kind === 'argmax') return this.forwardArgmax(tokens, r.pos, r.slot);
    if (pick.kind === 'sample') return this.forwardSample(tokens, r.pos, pick.sampling, r.slot);
    return this.forward(tokens, r.pos, r.slot);
  }

  /**
   * Each batched row's result from batchState.logits: device argmax/sample where offered, else host
   * logits. Greedy rows take one `argmaxRows` over the whole step (one launch and one wait for all of
   * them, not one per row); it also covers the sampled rows of a mixed step, whose ids go unused,
   * which costs a few idle blocks rather than a launch per greedy row.
   */
  private pickRows(rows: readonly DecodeRow[]): RowResult[] {
    const { backend: b, batchState: s, pickRow, vocabSize: V } = this;
    let host: Float32Array | undefined;
    const hostRow = (t: number): Float32Array => {
      host ??= b.readActivation(s.logits, rows.length);
      return host.slice(t * V, (t + 1) * V);
    };
    const greedy = b.argmaxRows && rows.some((r) => r.pick?.kind === 'argmax') ? b.argmaxRows(s.logits, rows.length) : null;
    return rows.map((r, t): RowResult => {
      const pick = r.pick ?? { kind: 'logits' };
      if (pick.kind === 'argmax') {
        if (greedy) return greedy[t];
        if (b.argmax && pickRow) {
          b.copyRows(pickRow, s.logits, t, 1);
          return b.argmax(pickRow);
        }
        return hostArgmax(hostRow(t));
      }
      if (pick.kind === 'sample' && b.sample && pickRow) {
        b.copyRows(pickRow, s.logits, t, 1);
        return b.sample(pickRow, pick.sampling) ?? hostRow(t);
      }
      return hostRow(t);
    });
  }

  /** Runs the tokens through the model, leaving the last position's logits in state.logits row 0. */
  private lastLogits(tokens: readonly number[], startPos: number, slot: number): void {
    const rows = this.feedChunks(tokens, startPos, slot);
    const { backend, state } = this;
    backend.copyRows(state.last, state.x, rows - 1, 1);
    backend.rmsNorm(state.last, state.last, this.weights.norm, this.config.rmsNormEps, 1);
    backend.linear(state.logits, state.last, this.weights.lmHead, 1);
  }

  /**
   * Feeds tokens into the slot's KV cache at positions startPos.. and computes no logits: a prompt's
   * chunks before its last (the batching engine's chunked prefill), without an lm_head pass each.
   */
  async feed(tokens: readonly number[], startPos: number, slot = 0): Promise<void> {
    this.feedChunks(tokens, startPos, slot);
  }

  /** Runs the tokens through the layers in chunks of state.rows; returns the last chunk's rows. */
  private feedChunks(tokens: readonly number[], startPos: number, slot: number): number {
    this.checkSlot(slot);
    this.checkRange(tokens.length, startPos);
    let rows = 0;
    for (let done = 0; done < tokens.length; done += rows) {
      rows = Math.min(this.state.rows, tokens.length - done);
      this.runChunk(tokens, done, rows, startPos + done, slot);
    }
    return rows;
  }

  /** Logits of every fed position, `[tokens.length, vocab]` row-major (perplexity needs them all). */
  async forwardAll(tokens: readonly number[], startPos: number, slot = 0): Promise<Float32Array> {
    this.checkSlot(slot);
    this.checkRange(tokens.length, startPos);
    const out = new Float32Array(tokens.length * this.vocabSize);
    const { backend, state } = this;
    for (let done = 0; done < tokens.length; done += state.rows) {
      const rows = Math.min(state.rows, tokens.length - done);
      this.runChunk(tokens, done, rows, startPos + done, slot);
      backend.rmsNorm(state.xb, state.x, this.weights.norm, this.config.rmsNormEps, rows);
      // lm_head in pieces of state.logitsRows (runState.ts says why)
      for (let r0 = 0; r0 < rows; r0 += state.logitsRows) {
        const n = Math.min(state.logitsRows, rows - r0);
        let x = state.xb;
        if (state.lmIn !== null && rows > state.logitsRows) {
          backend.copyRows(state.lmIn, state.xb, r0, n);
          x = state.lmIn;
        }
        backend.linear(state.logits, x, this.weights.lmHead, n);
        out.set(backend.readActivation(state.logits, n), (done + r0) * this.vocabSize);
      }
    }
    return out;
  }

  /**
   * The id, when it is one of the vocabulary's. Checked here for every pass: a replayed graph (Backend.runGraph,
   * decodeStep) reads the ids on the device, where the backend's embedding check does not run.
   */
  private checkToken(id: number): number {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) throw new RangeError(`token id ${id} is outside the vocabulary [0, ${this.vocabSize})`);
    return id;
  }

  private checkSlot(slot: number): void {
    if (!Number.isInteger(slot) || slot < 0 || slot >= this.caches.length) {
      throw new RangeError(`sequence slot ${slot} does not exist: the model has ${this.caches.length} (LlamaModelOptions.sequences)`);
    }
  }

  private checkRange(count: number, startPos: number): void {
    if (count === 0) throw new RangeError('forward needs at least one token');
    if (startPos + count > this.contextLength) {
      throw new ContextOverflowError(
        `${startPos + count} tokens do not fit the context of ${this.contextLength}: shorten the prompt or reduce max tokens` +
        (this.contextLength < this.config.maxPositionEmbeddings ? `, or raise --ctx (the model allows ${this.config.maxPositionEmbeddings})` : ''),
      );
    }
  }

  /**
   * Runs the decoder layers over tokens[from..from+rows) at positions startPos..; leaves the
   * residual in state.x. The ids go through the preallocated state.ids, so decode allocates nothing.
   */
  private runChunk(tokens: readonly number[], from: number, rows: number, startPos: number, slot: number): void {
    const ids = this.state.ids.subarray(0, rows);
    for (let i = 0; i < rows; i++) ids[i] = this.checkToken(tokens[from + i]);
    const record = (): void => this.layers(this.state, ids, rows, { kind: 'chunk', cache: this.caches[slot], startPos });
    // a captured graph holds its slot's cache, so each slot has its own (slot 0 keeps the old key)
    if (rows === 1 && this.backend.runGraph) this.backend.runGraph(slot === 0 ? 'decode' : `decode:${slot}`, { startPos, ids }, record);
    else record();
  }

  private layers(s: RunState, ids: Int32Array, rows: number, kv: KvTarget): void {
    const { backend: b, config: c, headDim } = this;
    b.embed(s.x, this.weights.embed, ids);
    const ropeShape = { heads: c.numHeads, kvHeads: c.numKvHeads, headDim, theta: c.ropeTheta };
    for (let l = 0; l < c.numLayers; l++) {
      const w = this.weights.layers[l];
      // attention block: x += o(attn(rope(q(norm x)), rope(k(norm x)), v(norm x)))
      b.rmsNorm(s.xb, s.x, w.attnNorm, c.rmsNormEps, rows, 'declared'); // (read by q, k and v only)
      // (q is read by attention only, and attention's output by o only; gate/up's by down only)
      const fused = kv.kind === 'chunk' && b.qkvRopeKv?.([s.q, s.k, s.v], s.xb, [w.q, w.k, w.v], kv.cache, l, kv.startPos, ropeShape, rows, 'attention');
      if (!fused && !b.linears?.([s.q, s.k, s.v], s.xb, [w.q, w.k, w.v], rows)) {
        b.linear(s.q, s.xb, w.q, rows);
        b.linear(s.k, s.xb, w.k, rows);
        b.linear(s.v, s.xb, w.v, rows);
      }
      if (kv.kind === 'chunk') {
        const { cache, startPos } = kv;
        if (!fused && !b.ropeKv?.(s.q, s.k, s.v, cache, l, startPos, ropeShape, rows)) {
          b.rope(s.q, c.numHeads, headDim, startPos, c.ropeTheta, rows);
          b.rope(s.k, c.numKvHeads, headDim, startPos, c.ropeTheta, rows);
          b.writeKv(cache, l, startPos, s.k, s.v, rows);
        }
        b.attention(s.attn, s.q, cache, { layer: l, startPos, heads: c.numHeads, kvHeads: c.numKvHeads, headDim }, rows, w.o);
      } else {
        // one sequence per row: its own position and cache
        const { caches, positions } = kv;
        if (b.ropeKvRows) {
          b.ropeKvRows(s.q, s.k, s.v, caches, l, positions, ropeShape, rows);
        } else {
          b.ropeRows(s.q, c.numHeads, headDim, positions, c.ropeTheta, rows);
          b.ropeRows(s.k, c.numKvHeads, headDim, positions, c.ropeTheta, rows);
          b.writeKvRows(caches, l, positions, s.k, s.v, rows);
        }
        b.attentionRows(s.attn, s.q, caches, { layer: l, heads: c.numHeads, kvHeads: c.numKvHeads, headDim }, positions, rows);
      }
      this.residualLinear(s, s.attn, w.o, rows);
      // MLP block: x += down(silu(gate(norm x)) · up(norm x))
      b.rmsNorm(s.xb, s.x, w.mlpNorm, c.rmsNormEps, rows, 'declared'); // (read by gate and up only)
      if (!b.gateUp?.(s.hidden, s.xb, w.gate, w.up, rows, w.down)) {
        b.linear(s.gate, s.xb, w.gate, rows);
        b.linear(s.up, s.xb, w.up, rows);
        b.swiglu(s.hidden, s.gate, s.up, rows);
      }
      this.residualLinear(s, s.hidden, w.down, rows);
    }
  }

  /** x += input Wᵀ, fused into one kernel where the backend offers it. */
  private residualLinear(s: RunState, input: Activation, weight: LinearWeight, rows: number): void {
    const b = this.backend;
    if (b.linearAdd) {
      b.linearAdd(s.x, input, weight, rows);
      return;
    }
    b.linear(s.proj, input, weight, rows);
    b.addInPlace(s.x, s.proj, rows);
  }

  dispose(): void {
    this.backend.dispose();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.dispose();
  }
}
