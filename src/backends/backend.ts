/**
 * The compute backend interface: a small typed set of tensor ops, in the spirit of ggml's
 * `ggml_backend_i`. Model code (src/model) drives a forward pass through these calls and never
 * touches CUDA, koffi or typed-array layouts; backends never know what a "layer" is.
 *
 * Conventions:
 * - Activations are f32 row-major matrices `[rows, cols]`; a batch of T tokens is `rows = T`.
 * - Weights are uploaded once at load time; handles are opaque to the caller.
 * - Ops write into caller-provided outputs (allocated once, llama2.c `RunState` style), so a
 *   decode step allocates nothing.
 * - The CPU backend is the oracle: every other backend is tested op by op against it.
 */
import type { GptqLinearHost } from '../formats/gptqTypes.js';

/** An activation matrix living on the backend. */
export interface Activation {
  readonly rows: number;
  readonly cols: number;
}

/** A weight matrix of a linear layer `y = x Wᵀ (+ b)`, `W: [outFeatures, inFeatures]`. */
export interface LinearWeight {
  readonly inFeatures: number;
  readonly outFeatures: number;
}

/** A 1-D f32 parameter (norm weights). */
export interface VectorWeight {
  readonly length: number;
}

/** An embedding table `[vocab, dim]` (fp16 on the host). */
export interface EmbeddingWeight {
  readonly vocab: number;
  readonly dim: number;
}

/** The KV cache of all layers: `[layers, maxSeq, kvHeads, headDim]` for K and for V. */
export interface KvCache {
  readonly layers: number;
  readonly maxSeq: number;
  readonly kvHeads: number;
  readonly headDim: number;
}

/** A dense fp16 matrix on the host, `[outFeatures, inFeatures]` row-major, raw IEEE half bits. */
export interface DenseLinearHost {
  readonly kind: 'dense';
  readonly outFeatures: number;
  readonly inFeatures: number;
  readonly data: Uint16Array;
  readonly bias?: Uint16Array;
}

export type LinearHost = DenseLinearHost | GptqLinearHost;

/**
 * How the caller arranges a linear's features (only where `Backend.supportsUploadOrder`). Orders are
 * permutations: position i holds original index order[i] (src/formats/actOrder.ts).
 */
export interface LinearUploadOptions {
  /** output j of the uploaded weight is host output outputOrder[j]: y comes out in this order */
  readonly outputOrder?: Int32Array;
  /**
   * GPTQ only: the caller feeds x already in this act-order weight's group order, x'[i] = x[order[i]]
   * with order = groupOrder(gIdx) (src/formats/actOrder.ts), e.g. written so by the producer of x
   */
  readonly inputInGroupOrder?: boolean;
}

/** Geometry of one attention call. */
export interface AttentionShape {
  readonly layer: number;
  /** position of the first query row in the sequence (= tokens already in the cache) */
  readonly startPos: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
}

/** Geometry of a rotary embedding with its KV-cache write (Backend.ropeKv, ropeKvRows, qkvRopeKv). */
export interface RopeShape {
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly theta: number;
}

/** The rows of one batched decode step (Backend.decodeStep): row t feeds ids[t] at positions[t] of caches[t]. */
export interface BatchStep {
  readonly ids: Int32Array;
  readonly positions: Int32Array;
  readonly caches: readonly KvCache[];
}

/** Geometry of a batched decode attention call: one query row per sequence (see `Backend.attentionRows`). */
export interface BatchAttentionShape {
  readonly layer: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
}

/**
 * One draw of the host Sampler's (src/generate/sampler.ts) as a device sampler takes it: the logits
 * are divided by `temperature`, then top-k, top-p and min-p keep candidates (in that order), and
 * the draw over what is left uses the uniform `u`, which came from the Sampler's PRNG.
 */
export interface DeviceSampling {
  /** > 0 */
  readonly temperature: number;
  /** 0 = off, else keep the topK most likely (topK < vocabulary) */
  readonly topK: number;
  /** in (0, 1]; 1 = off */
  readonly topP: number;
  /** in [0, 1]; 0 = off */
  readonly minP: number;
  /** uniform in [0, 1) */
  readonly u: number;
}

export interface Backend {
  readonly name: string;

  // --- memory ---------------------------------------------------------------------------
  allocActivation(rows: number, cols: number): Activation;
  /** Copy host data into an activation (`data.length === rows * cols`). */
  writeActivation(dst: Activation, data: Float32Array): void;
  /** Copy an activation (or its first `rows` rows) back to the host. */
  readActivation(src: Activation, rows?: number): Float32Array;

  /**
   * true when upload* calls copy the host data before returning and keep no reference to it, so the
   * loader may reuse its read buffers (model/weights.ts); absent or false: each upload gets fresh arrays.
   */
  readonly uploadCopiesHostData?: boolean;
  /** prompt rows per forward pass this backend runs best with (model default when absent: 256) */
  readonly preferredChunkRows?: number;
  /** true when uploadLinear honours LinearUploadOptions; absent or false: callers pass none */
  readonly supportsUploadOrder?: boolean;
  uploadLinear(weight: LinearHost, options?: LinearUploadOptions): LinearWeight;
  /**
   * The model feeds these linears rmsNorm(x)·norm (LLaMA: q/k/v after the attention norm, gate/up after
   * the MLP norm); a backend may prepare for it after the weights are uploaded (the CUDA backend keeps
   * the norm weight in each act-order linear's row order). Computes nothing; optional.
   */
  declareInputNorm?(norm: VectorWeight, linears: readonly LinearWeight[]): void;
  /**
   * Two linears that one fused kernel reads together (LLaMA: gate and up), after upload; a backend may lay
   * them out side by side (each of b's device arrays right after a's, so one stride reaches both) and
   * return the weights to use instead, releasing the old ones. Optional; returns [a, b] where it does nothing.
   */
  pairLinears?(a: LinearWeight, b: LinearWeight): readonly [LinearWeight, LinearWeight];
  uploadVector(data: Float32Array): VectorWeight;
  uploadEmbedding(data: Uint16Array, vocab: number, dim: number): EmbeddingWeight;
  allocKvCache(layers: number, maxSeq: number, kvHeads: number, headDim: number): KvCache;

  // --- ops (all act on the first `rows` rows of their operands) --------------------------
  /** out[t, :] = table[ids[t], :] */
  embed(out: Activation, table: EmbeddingWeight, ids: Int32Array): void;
  /**
   * out[t, :] = x[t, :] / sqrt(mean(x[t, :]²) + eps) * weight. readers 'declared': nothing but the linears that
   * declareInputNorm named for `weight` reads out (until it is written again), so a backend may keep out only in the
   * form those read.
   */
  rmsNorm(out: Activation, x: Activation, weight: VectorWeight, eps: number, rows: number, readers?: 'declared'): void;
  /** out[t, :] = x[t, :] Wᵀ + b */
  linear(out: Activation, x: Activation, weight: LinearWeight, rows: number): void;
  /**
   * Rotary embedding, Hugging Face convention (rotate halves): for each head, pairs
   * (i, i + headDim/2) rotate by angle pos · theta^(-2i/headDim), pos = startPos + t.
   */
  rope(x: Activation, heads: number, headDim: number, startPos: number, theta: number, rows: number): void;
  /** Store rows of K and V ([rows, kvHeads*headDim]) at positions startPos.. of `layer`. */
  writeKv(cache: KvCache, layer: number, startPos: number, k: Activation, v: Activation, rows: number): void;
  /**
   * Causal attention of `rows` query rows (q: [rows, heads*headDim]) over cache positions
   * 0..startPos+t for row t; grouped KV heads (head h reads kv head h / (heads/kvHeads)). reader, where given: nothing
   * but linear or linearAdd with that weight reads out (until it is written again), so a backend may keep out only in
   * the form that linear reads.
   */
  attention(out: Activation, q: Activation, cache: KvCache, shape: AttentionShape, rows: number, reader?: LinearWeight): void;
  /** out = silu(gate) * up, elementwise */
  swiglu(out: Activation, gate: Activation, up: Activation, rows: number): void;
  /** dst[0..rows) = src[srcRow..srcRow+rows) (e.g. the last position before the lm_head) */
  copyRows(dst: Activation, src: Activation, srcRow: number, rows: number): void;
  /** x += y, elementwise */
  addInPlace(x: Activation, y: Activation, rows: number): void;

  // --- batched decode (continuous batching): row t of the operands is the next token of sequence t,
  // which has its own KV cache and position; the linears and norms are the ordinary ops with rows = B.
  /** Rotary embedding of row t at position positions[t] (same convention as `rope`). */
  ropeRows(x: Activation, heads: number, headDim: number, positions: Int32Array, theta: number, rows: number): void;
  /** Store row t of K and V at position positions[t] of caches[t], layer `layer`. */
  writeKvRows(caches: readonly KvCache[], layer: number, positions: Int32Array, k: Activation, v: Activation, rows: number): void;
  /**
   * ropeRows(q, heads), ropeRows(k, kvHeads) and writeKvRows(caches, layer, positions, k, v) in one pass, where the
   * backend fuses them; optional (callers fall back to the three).
   */
  ropeKvRows?(q: Activation, k: Activation, v: Activation, caches: readonly KvCache[], layer: number, positions: Int32Array,
    shape: RopeShape, rows: number): void;
  /** Row t of q attends over positions 0..positions[t] (inclusive) of caches[t], layer `shape.layer`. */
  attentionRows(out: Activation, q: Activation, caches: readonly KvCache[], shape: BatchAttentionShape, positions: Int32Array, rows: number): void;

  // --- optional fast paths ---------------------------------------------------------------
  /**
   * A prompt chunk's rope(q), rope(k) and writeKv in one pass: q rotated in place, k rotated and v written into
   * `layer`'s cache at positions startPos.., k itself left as it was. True where the backend took the call; false
   * (or absent): the caller runs rope, rope and writeKv.
   */
  ropeKv?(q: Activation, k: Activation, v: Activation, cache: KvCache, layer: number, startPos: number,
    shape: RopeShape, rows: number): boolean;
  /**
   * A prompt chunk's q, k and v linears (as `linears`) with ropeKv's work in the same pass: q = rope(x wqᵀ), and
   * rope(x wkᵀ) and x wvᵀ written into `layer`'s cache at positions startPos..; the k and v activations are not
   * written. True where the backend took the call; false (or absent): the caller runs the linears and ropeKv.
   * qReader 'attention': nothing but the attention call that follows reads q (outs[0]), so a backend may keep q only
   * in the form its attention reads.
   */
  qkvRopeKv?(outs: readonly Activation[], x: Activation, weights: readonly LinearWeight[], cache: KvCache, layer: number, startPos: number,
    shape: RopeShape, rows: number, qReader?: 'attention'): boolean;
  /**
   * Run the ops that `record` issues as one captured graph, keyed by `key` (e.g. 'decode').
   * Backends that support it capture on the first call and replay afterwards; inside `record`,
   * the `startPos` and `ids` that ops receive must be read from device memory that this call
   * refreshes from `step` before each replay, so replays with new values are valid.
   * Backends without graphs leave this undefined and the model calls the ops directly.
   */
  runGraph?(key: string, step: { readonly startPos: number; readonly ids: Int32Array }, record: () => void): void;
  /**
   * With runGraph: the most rows of a batched decode step (LlamaModel.decodeBatch) that run faster as one
   * graph replay per row (each sequence's own captured decode step, reading the weights once per row) than
   * as one eager batched pass. Absent: 1 (a lone row replays its graph).
   */
  readonly decodeRowsByGraph?: number;
  /**
   * Run the ops that `record` issues as one batched decode step (rows = one new token per
   * sequence, LlamaModel.decodeBatch), as opposed to prompt rows. Backends that treat the two
   * differently define it (the CPU backend runs up to 8 decode rows through its int8 GEMV, prompt
   * rows of 4 or more through its f32 GEMM; the CUDA backend records the step once per row count and
   * position bucket and replays it, with `step`'s ids, positions and caches); absent: the model calls
   * `record` directly. `step`, where given, describes the rows `record` issues; `record` must issue the same ops for
   * every step of equal row count (only the ids, positions and caches differ).
   */
  decodeStep?(record: () => void, step?: BatchStep): void;
  /**
   * out = silu(x Gᵀ) ⊙ (x Uᵀ), a LLaMA MLP's gate and up projections and SwiGLU, in one pass where the
   * backend fuses them for these rows and weights: returns true. Returns false having done nothing where
   * it does not, and the caller runs linear, linear and swiglu (which any backend has). reader, where given: as for
   * attention (nothing but that weight's linear reads out).
   */
  gateUp?(out: Activation, x: Activation, gate: LinearWeight, up: LinearWeight, rows: number, reader?: LinearWeight): boolean;
  /**
   * outs[i] = x weights[i]ᵀ (+ b) for linears that read the same x (LLaMA: q, k, v), in one pass where the backend
   * fuses them for these rows and weights: returns true. Returns false having done nothing where it does not, and
   * the caller runs linear for each.
   */
  linears?(outs: readonly Activation[], x: Activation, weights: readonly LinearWeight[], rows: number): boolean;
  /**
   * acc += x Wᵀ + b (a linear layer whose output is added to the residual stream). Backends that
   * fuse the add into the matrix-vector kernel define it; callers fall back to linear + addInPlace.
   */
  linearAdd?(acc: Activation, x: Activation, weight: LinearWeight, rows: number): void;
  /** argmax of row 0 of `x`, computed on the device so only an id comes back. */
  argmax?(x: Activation): number;
  /**
   * argmax of each of rows 0..rows-1 of `x` (a batched decode step's logits), as `argmax` decides it:
   * lowest id on ties, NaN never chosen over a number, 0 for a row with nothing above -Infinity.
   * Where the logits are on a device, one launch and one copy of `rows` ids back.
   */
  argmaxRows?(x: Activation, rows: number): Int32Array;
  /**
   * The token Sampler.sample would draw from row 0 of `x` with these settings and this `u` (up to
   * rounding when u sits at a boundary of the cumulative mass), computed on the device so only an id
   * comes back; null when the device cannot decide (non-finite logits, too many candidates) and the
   * caller must read the logits and sample on the host.
   */
  sample?(x: Activation, p: DeviceSampling): number | null;

  /** Release everything this backend allocated. */
  dispose(): void;
}
