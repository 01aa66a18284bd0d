import { attention } from '../backends/cpu/kernels/attention.js';
import { rmsNorm, rope, swiglu } from '../backends/cpu/kernels/elementwise.js';
import type { LlamaConfig } from '../formats/hfConfig.js';
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

  constructor(readonly dims: LayerDims, readonly maxRows: number) {
    const { dim, kvDim, ffn } = dims;
    this.xn = new Float32Array(maxRows * dim);
    this.q = new Float32Array(maxRows * dim);
    this.k = new Float32Array(maxRows * kvDim);
    this.v = new Float32Array(maxRows * kvDim);
    this.attn = new Float32Array(maxRows * dim);
    this.proj = new Float32Array(maxRows * dim);
    this.gate = new Float32Array(maxRows * ffn);
    this.up = new Float32Array(maxRows * ffn);
    this.hidden = new Float32Array(maxRows * ffn);
    this.scores = new Float32Array(maxRows);
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
    linearRows(this.q, xn, p.linear.q, rows, dim, dim);
    linearRows(this.k, xn, p.linear.k, rows, dim, kvDim);
    linearRows(this.v, xn, p.linear.v, rows, dim, kvDim);
    rope(this.q, rows, heads, headDim, 0, ropeTheta, dim);
    rope(this.k, rows, kvHeads, headDim, 0, ropeTheta, kvDim);
    attention(this.attn, this.q, this.k, this.v, rows, 0, heads, kvHeads, headDim, this.scores);
    return this.attn.subarray(0, rows * dim);
  }

  /** x += o(a), in place. */
  addAttentionOutput(p: LayerParams, x: Float32Array, a: Float32Array, rows: number): void {
    const { dim } = this.dims;
    linearRows(this.proj, a, p.linear.o, rows, dim, dim);
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
    linearRows(this.gate, hn, p.linear.gate, rows, dim, ffn);
    linearRows(this.up, hn, p.linear.up, rows, dim, ffn);
    swiglu(this.hidden, this.gate, this.up, rows * ffn);
    return this.hidden.subarray(0, rows * ffn);
  }

  /** h += down(m), in place. */
  addMlpOutput(p: LayerParams, h: Float32Array, m: Float32Array, rows: number): void {
    const { dim, ffn } = this.dims;
    linearRows(this.proj, m, p.linear.down, rows, ffn, dim);
    for (let i = 0; i < rows * dim; i++) h[i] += this.proj[i];
  }

  /** The whole layer, x ← layer(x), in place. */
  forward(p: LayerParams, x: Float32Array, rows: number): void {
    const a = this.attention(p, this.attnInput(p, x, rows), rows);
    this.addAttentionOutput(p, x, a, rows);
    this.addMlpOutput(p, x, this.mlpHidden(p, this.mlpInput(p, x, rows), rows), rows);
  }
}
