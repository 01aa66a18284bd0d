import type {
  Activation, AttentionShape, Backend, BatchAttentionShape, EmbeddingWeight, KvCache, LinearHost, LinearWeight, VectorWeight,
} from '../backend.js';
import { unpackQweight } from '../../formats/gptq.js';
import { argmaxRows } from './kernels/argmax.js';
import { attention } from './kernels/attention.js';
import { rmsNorm, rope, swiglu } from './kernels/elementwise.js';
import { dequantizeOutputRows, prepareGptq, type CpuGptq } from './kernels/gptqDequant.js';
import { HALF_TO_FLOAT, halfArrayToFloat } from './kernels/half.js';
import { matmulRows } from './kernels/matmul.js';

/**
 * The plain TypeScript backend: single-threaded, f32 arithmetic, written for clarity. It is the
 * oracle every faster backend is tested against (the default `CpuBackend` in cpuBackend.ts extends
 * it with WebAssembly SIMD kernels and threads, and falls back to these ops wherever it has none).
 */

export class CpuActivation implements Activation {
  /** `ptr`: byte offset of `data` in the fast backend's shared wasm memory, −1 for plain arrays */
  constructor(readonly rows: number, readonly cols: number, readonly data: Float32Array, readonly ptr = -1) {}
}

type CpuLinear =
  | { readonly kind: 'dense'; readonly inFeatures: number; readonly outFeatures: number; readonly w: Float32Array; readonly bias?: Float32Array }
  | { readonly kind: 'gptq'; readonly inFeatures: number; readonly outFeatures: number; readonly g: CpuGptq; readonly bias?: Float32Array };

class CpuVector implements VectorWeight {
  constructor(readonly data: Float32Array) {}
  get length(): number { return this.data.length; }
}

class CpuEmbedding implements EmbeddingWeight {
  constructor(readonly vocab: number, readonly dim: number, readonly data: Uint16Array) {}
}

class CpuKvCache implements KvCache {
  /** per layer: [maxSeq, kvHeads·headDim] */
  readonly k: Float32Array[];
  readonly v: Float32Array[];
  constructor(readonly layers: number, readonly maxSeq: number, readonly kvHeads: number, readonly headDim: number) {
    const size = maxSeq * kvHeads * headDim;
    this.k = Array.from({ length: layers }, () => new Float32Array(size));
    this.v = Array.from({ length: layers }, () => new Float32Array(size));
  }
}

/** GPTQ layers are dequantized this many output rows at a time into scratch, then multiplied. */
const DEQUANT_CHUNK = 64;

export class PlainCpuBackend implements Backend {
  readonly name: string = 'cpu-plain';
  private dequantScratch = new Float32Array(0);
  private scores = new Float32Array(0);

  allocActivation(rows: number, cols: number): Activation {
    return new CpuActivation(rows, cols, new Float32Array(rows * cols));
  }

  writeActivation(dst: Activation, data: Float32Array): void {
    const a = act(dst);
    if (data.length > a.data.length) throw new RangeError(`writeActivation: ${data.length} values into [${a.rows}, ${a.cols}]`);
    a.data.set(data);
  }

  readActivation(src: Activation, rows = src.rows): Float32Array {
    const a = act(src);
    return a.data.slice(0, rows * a.cols);
  }

  uploadLinear(weight: LinearHost): LinearWeight {
    const bias = weight.bias ? halfArrayToFloat(weight.bias) : undefined;
    const { inFeatures, outFeatures } = weight;
    const linear: CpuLinear = weight.kind === 'dense'
      ? { kind: 'dense', inFeatures, outFeatures, w: halfArrayToFloat(weight.data), bias }
      : { kind: 'gptq', inFeatures, outFeatures, g: prepareGptq(weight, unpackQweight), bias };
    return linear;
  }

  uploadVector(data: Float32Array): VectorWeight {
    return new CpuVector(data.slice());
  }

  uploadEmbedding(data: Uint16Array, vocab: number, dim: number): EmbeddingWeight {
    return new CpuEmbedding(vocab, dim, data);
  }

  allocKvCache(layers: number, maxSeq: number, kvHeads: number, headDim: number): KvCache {
    return new CpuKvCache(layers, maxSeq, kvHeads, headDim);
  }

  embed(out: Activation, table: EmbeddingWeight, ids: Int32Array): void {
    const o = act(out);
    const e = table as CpuEmbedding;
    for (let t = 0; t < ids.length; t++) {
      const id = ids[t];
      if (id < 0 || id >= e.vocab) throw new RangeError(`token id ${id} outside the vocabulary [0, ${e.vocab})`);
      const src = id * e.dim;
      for (let i = 0; i < e.dim; i++) o.data[t * e.dim + i] = HALF_TO_FLOAT[e.data[src + i]];
    }
  }

  rmsNorm(out: Activation, x: Activation, weight: VectorWeight, eps: number, rows: number): void {
    rmsNorm(act(out).data, act(x).data, (weight as CpuVector).data, eps, rows, x.cols);
  }

  linear(out: Activation, x: Activation, weight: LinearWeight, rows: number): void {
    const l = weight as CpuLinear;
    const o = act(out);
    const xd = act(x).data;
    if (l.kind === 'dense') {
      matmulRows(o.data, o.cols, 0, xd, l.w, rows, l.inFeatures, l.outFeatures, l.bias);
      return;
    }
    const chunk = Math.min(DEQUANT_CHUNK, l.outFeatures);
    if (this.dequantScratch.length < chunk * l.inFeatures) this.dequantScratch = new Float32Array(chunk * l.inFeatures);
    for (let o0 = 0; o0 < l.outFeatures; o0 += chunk) {
      const n = Math.min(chunk, l.outFeatures - o0);
      dequantizeOutputRows(l.g, o0, n, this.dequantScratch);
      matmulRows(o.data, o.cols, o0, xd, this.dequantScratch, rows, l.inFeatures, n, l.bias?.subarray(o0, o0 + n));
    }
  }

  rope(x: Activation, heads: number, headDim: number, startPos: number, theta: number, rows: number): void {
    rope(act(x).data, rows, heads, headDim, startPos, theta, x.cols);
  }

  writeKv(cache: KvCache, layer: number, startPos: number, k: Activation, v: Activation, rows: number): void {
    const c = cache as CpuKvCache;
    if (startPos + rows > c.maxSeq) throw new RangeError(`KV cache holds ${c.maxSeq} positions, asked for ${startPos + rows}`);
    const width = c.kvHeads * c.headDim;
    c.k[layer].set(act(k).data.subarray(0, rows * width), startPos * width);
    c.v[layer].set(act(v).data.subarray(0, rows * width), startPos * width);
  }

  attention(out: Activation, q: Activation, cache: KvCache, shape: AttentionShape, rows: number): void {
    const c = cache as CpuKvCache;
    const need = shape.startPos + rows;
    if (this.scores.length < need) this.scores = new Float32Array(Math.max(need, c.maxSeq));
    attention(act(out).data, act(q).data, c.k[shape.layer], c.v[shape.layer], rows, shape.startPos,
      shape.heads, shape.kvHeads, shape.headDim, this.scores);
  }

  // Batched decode: each row is one sequence's next token, so the single-sequence kernels run per
  // row on views of that row, each with its own cache and position.
  ropeRows(x: Activation, heads: number, headDim: number, positions: Int32Array, theta: number, rows: number): void {
    const xd = act(x).data;
    for (let t = 0; t < rows; t++) rope(xd.subarray(t * x.cols, (t + 1) * x.cols), 1, heads, headDim, positions[t], theta, x.cols);
  }

  writeKvRows(caches: readonly KvCache[], layer: number, positions: Int32Array, k: Activation, v: Activation, rows: number): void {
    const kd = act(k).data, vd = act(v).data;
    for (let t = 0; t < rows; t++) {
      const c = caches[t] as CpuKvCache;
      const pos = positions[t];
      if (pos < 0 || pos >= c.maxSeq) throw new RangeError(`KV cache holds ${c.maxSeq} positions, asked for position ${pos} (row ${t})`);
      const width = c.kvHeads * c.headDim;
      c.k[layer].set(kd.subarray(t * k.cols, t * k.cols + width), pos * width);
      c.v[layer].set(vd.subarray(t * v.cols, t * v.cols + width), pos * width);
    }
  }

  attentionRows(out: Activation, q: Activation, caches: readonly KvCache[], shape: BatchAttentionShape, positions: Int32Array, rows: number): void {
    const od = act(out).data, qd = act(q).data;
    for (let t = 0; t < rows; t++) {
      const c = caches[t] as CpuKvCache;
      if (this.scores.length < positions[t] + 1) this.scores = new Float32Array(Math.max(positions[t] + 1, c.maxSeq));
      attention(od.subarray(t * out.cols, (t + 1) * out.cols), qd.subarray(t * q.cols, (t + 1) * q.cols), c.k[shape.layer], c.v[shape.layer],
        1, positions[t], shape.heads, shape.kvHeads, shape.headDim, this.scores);
    }
  }

  swiglu(out: Activation, gate: Activation, up: Activation, rows: number): void {
    swiglu(act(out).data, act(gate).data, act(up).data, rows * out.cols);
  }

  copyRows(dst: Activation, src: Activation, srcRow: number, rows: number): void {
    const s = act(src);
    act(dst).data.set(s.data.subarray(srcRow * s.cols, (srcRow + rows) * s.cols));
  }

  addInPlace(x: Activation, y: Activation, rows: number): void {
    const xd = act(x).data, yd = act(y).data;
    for (let i = 0, n = rows * x.cols; i < n; i++) xd[i] += yd[i];
  }

  /** Greedy ids of a batched decode step, read straight from the logits (no row copies). */
  argmaxRows(x: Activation, rows: number): Int32Array {
    const a = act(x);
    if (!Number.isInteger(rows) || rows < 0 || rows > a.rows) throw new RangeError(`argmaxRows: ${rows} rows of [${a.rows}, ${a.cols}]`);
    const ids = new Int32Array(rows);
    argmaxRows(ids, a.data, rows, a.cols);
    return ids;
  }

  dispose(): void {
    this.dequantScratch = new Float32Array(0);
    this.scores = new Float32Array(0);
  }
}

export function act(a: Activation): CpuActivation {
  if (!(a instanceof CpuActivation)) throw new TypeError('activation was not allocated by the CPU backend');
  return a;
}
