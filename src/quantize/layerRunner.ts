import { attention } from '../backends/cpu/kernels/attention.js';
import { rmsNorm, rope, swiglu } from '../backends/cpu/kernels/elementwise.js';
import type { LlamaConfig } from '../formats/hfConfig.js';
import type { QuantEngine } from './engine.js';
import { linearRows } from './kernels.js';

/**
 * One LLaMA decoder layer in fp32 on the plain CPU kernels, split at the points where GPTQ needs
 * the inputs of a linear: [q, k, v] read norm1(x), [o] reads the attention output, [gate, up]
 * read norm2(h), [down] reads swiglu(gate, up). Each call handles one calibration sample
 * (`rows` tokens at positions 0..rows-1, causal) and returns a view of a scratch buffer that
 * the next call of the same kind overwrites.
 */
export const LINEAR_NAMES = ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] as const;
export type LinearName = (typeof LINEAR_NAMES)[number];

/** Hugging Face tensor name of each linear inside `model.layers.<i>.` */
export const LINEAR_PATHS: Readonly<Record<LinearName, string>> = {
  q: 'self_attn.q_proj', k: 'self_attn.k_proj', v: 'self_attn.v_proj', o: 'self_attn.o_proj',
  gate: 'mlp.gate_proj', up: 'mlp.up_proj', down: 'mlp.down_proj',
};

export interface LayerDims {
  readonly dim: number;
  readonly kvDim: number;
  readonly ffn: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly eps: number;
  readonly ropeTheta: number;
}

export function layerDims(c: LlamaConfig): LayerDims {
  const headDim = c.hiddenSize / c.numHeads;
  return {
    dim: c.hiddenSize, kvDim: c.numKvHeads * headDim, ffn: c.intermediateSize, heads: c.numHeads,
    kvHeads: c.numKvHeads, headDim, eps: c.rmsNormEps, ropeTheta: c.ropeTheta,
  };
}

/** [out, in] of each linear. */
export function linearShape(d: LayerDims, name: LinearName): { out: number; in: number } {
  switch (name) {
    case 'q': return { out: d.dim, in: d.dim };
    case 'k': case 'v': return { out: d.kvDim, in: d.dim };
    case 'o': return { out: d.dim, in: d.dim };
    case 'gate': case 'up': return { out: d.ffn, in: d.dim };
    case 'down': return { out: d.dim, in: d.ffn };
  }
}

/** One layer's parameters in f32; quantizing a linear replaces its entry with the dequantized weights. */
export interface LayerParams {
  readonly attnNorm: Float32Array; // [dim]
  readonly mlpNorm: Float32Array; // [dim]
  readonly linear: Record<LinearName, Float32Array>; // each [out, in]
}

export class LayerRunner {
  private readonly xn: Float32Array; // [rows, dim]
  private readonly q: Float32Array; // [rows, dim]
  private readonly k: Float32Array; // [rows, kvDim]
  private readonly v: Float32Array; // [rows, kvDim]
  private readonly attn: Float32Array; // [rows, dim]
  private readonly proj: Float32Array; // [rows, dim]
  private readonly gate: Float32Array; // [rows, ffn]
  private readonly up: Float32Array; // [rows, ffn]
  private readonly hidden: Float32Array; // [rows, ffn]
  private readonly scores: Float32Array; // [rows]
  /** a sample's layer input `[rows, dim]`, for callers that keep activations in another form (fp16) */
  readonly x: Float32Array;
  /** a second `[rows, dim]` input buffer (the attention output read back for o) */
  readonly y: Float32Array;
  /** the engine's kernels when `engine` was given and the shapes suit them (every dimension a multiple of 4) */
  private readonly engine: QuantEngine | undefined;
  private readonly kPad: number;
  private readonly vt: number; // engine: V transposed [kvDim, kPad], zero past the rows
  private readonly s: number; // engine: attention scores scratch

  constructor(readonly dims: LayerDims, readonly maxRows: number, engine?: QuantEngine) {
    const { dim, kvDim, ffn, headDim } = dims;
    this.engine = engine && [dim, kvDim, ffn, headDim].every((d) => d % 4 === 0) ? engine : undefined;
    this.kPad = (maxRows + 3) & ~3;
    const e = this.engine;
    const buf = (n: number): Float32Array => (e ? e.alloc(n * 4).f32 : new Float32Array(n));
    this.xn = buf(maxRows * dim);
    this.q = buf(maxRows * dim);
    this.k = buf(maxRows * kvDim);
    this.v = buf(maxRows * kvDim);
    this.attn = buf(maxRows * dim);
    this.proj = buf(maxRows * dim);
    this.gate = buf(maxRows * ffn);
    this.up = buf(maxRows * ffn);
    this.hidden = buf(maxRows * ffn);
    this.x = buf(maxRows * dim);
    this.y = buf(maxRows * dim);
    this.scores = new Float32Array(maxRows);
    this.vt = e ? e.alloc(kvDim * this.kPad * 4).ptr : 0;
    this.s = e ? e.alloc(e.scoreBytes(this.kPad)).ptr : 0;
  }

  /** Bytes of the runner's own buffers (activation scratch), for memory reports. */
  get scratchBytes(): number {
    const { dim, kvDim, ffn } = this.dims;
    return this.maxRows * (7 * dim + 2 * kvDim + 3 * ffn) * 4 + (this.engine ? kvDim * this.kPad * 4 + this.engine.scoreBytes(this.kPad) : 0);
  }

  private linear(out: Float32Array, x: Float32Array, w: Float32Array, rows: number, inF: number, outF: number): void {
    const e = this.engine;
    if (!e) return linearRows(out, x, w, rows, inF, outF);
    const op = e.ptrOf(out);
    if (op === undefined) throw new Error('layer runner: output outside the engine memory');
    e.linear(op, e.place(x, 'runner.x'), w, rows, inF, outF);
  }

  /** norm1(x), the input of q, k, v: `[rows, dim]`. */
  attnInput(p: LayerParams, x: Float32Array, rows: number): Float32Array {
    const { dim, eps } = this.dims;
    rmsNorm(this.xn, x, p.attnNorm, eps, rows, dim);
    return this.xn.subarray(0, rows * dim);
  }

  /** Causal self-attention of norm1(x) (pass attnInput's result), the input of o: `[rows, dim]`. */
  attention(p: LayerParams, xn: Float32Array, rows: number): Float32Array {
    const { dim, kvDim, heads, kvHeads, headDim, ropeTheta } = this.dims;
    this.linear(this.q, xn, p.linear.q, rows, dim, dim);
    this.linear(this.k, xn, p.linear.k, rows, dim, kvDim);
    this.linear(this.v, xn, p.linear.v, rows, dim, kvDim);
    rope(this.q, rows, heads, headDim, 0, ropeTheta, dim);
    rope(this.k, rows, kvHeads, headDim, 0, ropeTheta, kvDim);
    const e = this.engine;
    if (!e) {
      attention(this.attn, this.q, this.k, this.v, rows, 0, heads, kvHeads, headDim, this.scores);
    } else {
      const kPad = this.kPad;
      const vt = e.f32(this.vt, kvDim * kPad);
      const v = this.v;
      for (let t = 0; t < rows; t++) for (let i = 0; i < kvDim; i++) vt[i * kPad + t] = v[t * kvDim + i];
      for (let i = 0; i < kvDim; i++) vt.fill(0, i * kPad + rows, (i + 1) * kPad);
      const ptr = (a: Float32Array): number => e.ptrOf(a) as number;
      e.attention(ptr(this.attn), ptr(this.q), ptr(this.k), this.vt, this.s, rows, kPad, heads, kvHeads, headDim);
    }
    return this.attn.subarray(0, rows * dim);
  }

  /** x += o(a), in place. */
  addAttentionOutput(p: LayerParams, x: Float32Array, a: Float32Array, rows: number): void {
    const { dim } = this.dims;
    this.linear(this.proj, a, p.linear.o, rows, dim, dim);
    for (let i = 0; i < rows * dim; i++) x[i] += this.proj[i];
  }

  /** norm2(h), the input of gate and up: `[rows, dim]`. */
  mlpInput(p: LayerParams, h: Float32Array, rows: number): Float32Array {
    const { dim, eps } = this.dims;
    rmsNorm(this.xn, h, p.mlpNorm, eps, rows, dim);
    return this.xn.subarray(0, rows * dim);
  }

  /** swiglu(gate(hn), up(hn)), the input of down: `[rows, ffn]`. */
  mlpHidden(p: LayerParams, hn: Float32Array, rows: number): Float32Array {
    const { dim, ffn } = this.dims;
    this.linear(this.gate, hn, p.linear.gate, rows, dim, ffn);
    this.linear(this.up, hn, p.linear.up, rows, dim, ffn);
    swiglu(this.hidden, this.gate, this.up, rows * ffn);
    return this.hidden.subarray(0, rows * ffn);
  }

  /** h += down(m), in place. */
  addMlpOutput(p: LayerParams, h: Float32Array, m: Float32Array, rows: number): void {
    const { dim, ffn } = this.dims;
    this.linear(this.proj, m, p.linear.down, rows, ffn, dim);
    for (let i = 0; i < rows * dim; i++) h[i] += this.proj[i];
  }

  /** The whole layer, x ← layer(x), in place. */
  forward(p: LayerParams, x: Float32Array, rows: number): void {
    const a = this.attention(p, this.attnInput(p, x, rows), rows);
    this.addAttentionOutput(p, x, a, rows);
    this.addMlpOutput(p, x, this.mlpHidden(p, this.mlpInput(p, x, rows), rows), rows);
  }
}
