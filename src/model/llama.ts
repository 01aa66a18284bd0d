import type { Activation, Backend, DeviceSampling, KvCache, LinearWeight } from '../backends/backend.js';
import { CpuBackend } from '../backends/cpu/cpuBackend.js';
import { ContextOverflowError } from '../errors.js';
import type { LlamaConfig } from '../formats/hfConfig.js';
import { discoverModel, type DiscoveredModel } from '../formats/modelFolder.js';
import { WeightStore } from '../formats/weightStore.js';
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
  /** filled with the load's seconds by phase (benchmarks) */
  readonly profile?: LoadProfile;
}

/**
 * A LLaMA decoder (RMSNorm, rotary attention with KV cache and grouped KV heads, SwiGLU MLP,
 * untied lm_head) running on any `Backend`. One model holds one sequence's KV cache.
 */
export class LlamaModel implements CausalLm, AsyncDisposable {
  readonly vocabSize: number;
  readonly contextLength: number;
  private readonly headDim: number;

  private constructor(
    readonly info: DiscoveredModel,
    readonly backend: Backend,
    private readonly weights: LlamaWeights,
    private readonly cache: KvCache,
    private readonly state: RunState,
    contextLength: number,
  ) {
    this.vocabSize = info.config.vocabSize;
    this.contextLength = contextLength;
    this.headDim = info.config.hiddenSize / info.config.numHeads;
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
    const cache = backend.allocKvCache(config.numLayers, contextLength, config.numKvHeads, config.hiddenSize / config.numHeads);
    const state = allocRunState(backend, config, Math.min(options.chunkRows ?? backend.preferredChunkRows ?? 256, contextLength));
    return new LlamaModel(info, backend, weights, cache, state, contextLength);
  }

  /** Logits of the last fed position, `[vocab]`. */
  async forward(tokens: readonly number[], startPos: number): Promise<Float32Array> {
    this.lastLogits(tokens, startPos);
    return this.backend.readActivation(this.state.logits, 1);
  }

  /** argmax of the last position's logits; on backends with a device argmax only the id comes back. */
  async forwardArgmax(tokens: readonly number[], startPos: number): Promise<number> {
    this.lastLogits(tokens, startPos);
    const { backend, state } = this;
    if (backend.argmax) return backend.argmax(state.logits);
    const logits = backend.readActivation(state.logits, 1);
    let best = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
    return best;
  }

  /**
   * The next id drawn where the logits are (Backend.sample, a launch after the decode graph), or the
   * logits row when the backend has no device sampler or cannot decide this one.
   */
  async forwardSample(tokens: readonly number[], startPos: number, sampling: DeviceSampling): Promise<number | Float32Array> {
    this.lastLogits(tokens, startPos);
    const { backend, state } = this;
    return backend.sample?.(state.logits, sampling) ?? backend.readActivation(state.logits, 1);
  }

  /** Runs the tokens through the model, leaving the last position's logits in state.logits row 0. */
  private lastLogits(tokens: readonly number[], startPos: number): void {
    this.checkRange(tokens.length, startPos);
    let rows = 0;
    for (let done = 0; done < tokens.length; done += rows) {
      rows = Math.min(this.state.rows, tokens.length - done);
      this.runChunk(tokens, done, rows, startPos + done);
    }
    const { backend, state } = this;
    backend.copyRows(state.last, state.x, rows - 1, 1);
    backend.rmsNorm(state.last, state.last, this.weights.norm, this.config.rmsNormEps, 1);
    backend.linear(state.logits, state.last, this.weights.lmHead, 1);
  }

  /** Logits of every fed position, `[tokens.length, vocab]` row-major (perplexity needs them all). */
  async forwardAll(tokens: readonly number[], startPos: number): Promise<Float32Array> {
    this.checkRange(tokens.length, startPos);
    const out = new Float32Array(tokens.length * this.vocabSize);
    const { backend, state } = this;
    for (let done = 0; done < tokens.length; done += state.rows) {
      const rows = Math.min(state.rows, tokens.length - done);
      this.runChunk(tokens, done, rows, startPos + done);
      backend.rmsNorm(state.xb, state.x, this.weights.norm, this.config.rmsNormEps, rows);
      backend.linear(state.logits, state.xb, this.weights.lmHead, rows);
      out.set(backend.readActivation(state.logits, rows), done * this.vocabSize);
    }
    return out;
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
  private runChunk(tokens: readonly number[], from: number, rows: number, startPos: number): void {
    const ids = this.state.ids.subarray(0, rows);
    for (let i = 0; i < rows; i++) ids[i] = tokens[from + i];
    const record = (): void => this.layers(ids, startPos, rows);
    if (rows === 1 && this.backend.runGraph) this.backend.runGraph('decode', { startPos, ids }, record);
    else record();
  }

  private layers(ids: Int32Array, startPos: number, rows: number): void {
    const { backend: b, state: s, config: c, headDim } = this;
    b.embed(s.x, this.weights.embed, ids);
    for (let l = 0; l < c.numLayers; l++) {
      const w = this.weights.layers[l];
      // attention block: x += o(attn(rope(q(norm x)), rope(k(norm x)), v(norm x)))
      b.rmsNorm(s.xb, s.x, w.attnNorm, c.rmsNormEps, rows);
      b.linear(s.q, s.xb, w.q, rows);
      b.linear(s.k, s.xb, w.k, rows);
      b.linear(s.v, s.xb, w.v, rows);
      b.rope(s.q, c.numHeads, headDim, startPos, c.ropeTheta, rows);
      b.rope(s.k, c.numKvHeads, headDim, startPos, c.ropeTheta, rows);
      b.writeKv(this.cache, l, startPos, s.k, s.v, rows);
      b.attention(s.attn, s.q, this.cache, { layer: l, startPos, heads: c.numHeads, kvHeads: c.numKvHeads, headDim }, rows);
      this.residualLinear(s.attn, w.o, rows);
      // MLP block: x += down(silu(gate(norm x)) · up(norm x))
      b.rmsNorm(s.xb, s.x, w.mlpNorm, c.rmsNormEps, rows);
      b.linear(s.gate, s.xb, w.gate, rows);
      b.linear(s.up, s.xb, w.up, rows);
      b.swiglu(s.hidden, s.gate, s.up, rows);
      this.residualLinear(s.hidden, w.down, rows);
    }
  }

  /** x += input Wᵀ, fused into one kernel where the backend offers it. */
  private residualLinear(input: Activation, weight: LinearWeight, rows: number): void {
    const { backend: b, state: s } = this;
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
