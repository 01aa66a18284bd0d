/**
 * One LLaMA decoder layer on the GPU for calibration: the device twin of layerRunner.ts, split at
 * the same points (the inputs of [q, k, v], [o], [gate, up], [down]), one sample of `rows` tokens
 * at positions 0..rows−1 per call. Weights are fp16 on the device (read from the fp16 checkpoint
 * as stored; replaced by the dequantized weights as each linear is quantized), the linears run on
 * tensor cores with fp16 inputs and f32 outputs, the residual stream stays f32. Scratch buffers
 * are allocated once for `rows`; each call overwrites the buffer it returns.
 */
import type { DevicePtr } from '../../backends/cuda/driver.js';
import { ModelLoadError } from '../../errors.js';
import type { LlamaConfig } from '../../formats/hfConfig.js';
import { asUint16, toFloat32, type SafetensorsDType } from '../../formats/safetensors.js';
import type { WeightStore } from '../../formats/weightStore.js';
import { halfArrayToFloat } from '../../backends/cpu/kernels/half.js';
import { toHalfArray } from '../half16.js';
import { LINEAR_NAMES, LINEAR_PATHS, linearShape, type LayerDims, type LinearName } from '../layerRunner.js';
import type { QuantGpu } from './gpu.js';
import { attention, gemmF16, rmsNormHalf, rope, swigluHalf, toHalf } from './ops.js';

/** A layer's weights on the host, ready to upload: linears fp16 `[out, in]`, norms f32. */
export interface HalfLayerParams {
  readonly attnNorm: Float32Array;
  readonly mlpNorm: Float32Array;
  readonly linear: Record<LinearName, Uint16Array>;
}

function readTensor(store: WeightStore, name: string, shape: readonly number[]): { dtype: SafetensorsDType; bytes: Uint8Array } {
  if (!store.has(name)) throw new ModelLoadError(`tensor "${name}" is missing from ${store.source}: the checkpoint is incomplete or not a LLaMA model`);
  const e = store.entry(name);
  if (e.shape.length !== shape.length || e.shape.some((d, i) => d !== shape[i])) {
    throw new ModelLoadError(`tensor "${name}" has shape [${e.shape.join(', ')}] but config.json implies [${shape.join(', ')}]: config.json and the weights do not belong together`);
  }
  return { dtype: e.dtype, bytes: store.read(name) };
}

/** Layer `l` with its linears as fp16 bits (fp16 checkpoints are not converted at all). */
export function readHalfLayer(store: WeightStore, config: LlamaConfig, dims: LayerDims, l: number): HalfLayerParams {
  const p = `model.layers.${l}`;
  const linear = {} as Record<LinearName, Uint16Array>;
  for (const name of LINEAR_NAMES) {
    const s = linearShape(dims, name);
    const t = readTensor(store, `${p}.${LINEAR_PATHS[name]}.weight`, [s.out, s.in]);
    linear[name] = t.dtype === 'F16' ? asUint16(t.bytes) : toHalfArray(toFloat32(t.dtype, t.bytes));
  }
  const norm = (n: string): Float32Array => {
    const t = readTensor(store, `${p}.${n}.weight`, [dims.dim]);
    return t.dtype === 'F16' ? halfArrayToFloat(asUint16(t.bytes)) : toFloat32(t.dtype, t.bytes);
  };
  return { attnNorm: norm('input_layernorm'), mlpNorm: norm('post_attention_layernorm'), linear };
}

export class DeviceLayer {
  readonly weights: Record<LinearName, DevicePtr>;
  private readonly attnNorm: DevicePtr;
  private readonly mlpNorm: DevicePtr;
  private readonly xn: DevicePtr; // [rows, dim] fp16
  private readonly q: DevicePtr; // [rows, dim] f32
  private readonly k: DevicePtr; // [rows, kvDim] f32
  private readonly v: DevicePtr;
  private readonly k16: DevicePtr; // [rows, kvDim] fp16
  private readonly v16: DevicePtr;
  private readonly attn: DevicePtr; // [rows, dim] f32
  private readonly gate: DevicePtr; // [rows, ffn] f32
  private readonly up: DevicePtr;
  /** [rows, dim] fp16: attention output when the caller gives no destination */
  readonly a16: DevicePtr;
  /** [rows, ffn] fp16: MLP hidden state when the caller gives no destination */
  readonly m16: DevicePtr;

  constructor(private readonly g: QuantGpu, readonly dims: LayerDims, readonly rows: number) {
    const { dim, kvDim, ffn } = dims;
    const a = (bytes: number, what: string): DevicePtr => g.alloc(bytes, what);
    this.weights = {} as Record<LinearName, DevicePtr>;
    for (const name of LINEAR_NAMES) {
      const s = linearShape(dims, name);
      this.weights[name] = a(s.out * s.in * 2, `${name}_proj weights`);
    }
    this.attnNorm = a(dim * 4, 'norm weights');
    this.mlpNorm = a(dim * 4, 'norm weights');
    this.xn = a(rows * dim * 2, 'layer scratch');
    this.q = a(rows * dim * 4, 'layer scratch');
    this.k = a(rows * kvDim * 4, 'layer scratch');
    this.v = a(rows * kvDim * 4, 'layer scratch');
    this.k16 = a(rows * kvDim * 2, 'layer scratch');
    this.v16 = a(rows * kvDim * 2, 'layer scratch');
    this.attn = a(rows * dim * 4, 'layer scratch');
    this.a16 = a(rows * dim * 2, 'layer scratch');
    this.gate = a(rows * ffn * 4, 'layer scratch');
    this.up = a(rows * ffn * 4, 'layer scratch');
    this.m16 = a(rows * ffn * 2, 'layer scratch');
  }

  /** Bytes of device memory one DeviceLayer takes for `dims` and `rows`. */
  static bytes(dims: LayerDims, rows: number): number {
    const { dim, kvDim, ffn } = dims;
    const weights = LINEAR_NAMES.reduce((s, n) => { const l = linearShape(dims, n); return s + l.out * l.in * 2; }, 0);
    return weights + 8 * dim + rows * (dim * (2 + 4 + 4 + 2) + kvDim * (4 + 4 + 2 + 2) + ffn * (4 + 4 + 2));
  }

  upload(p: HalfLayerParams): void {
    for (const name of LINEAR_NAMES) this.g.upload(this.weights[name], p.linear[name]);
    this.g.upload(this.attnNorm, p.attnNorm);
    this.g.upload(this.mlpNorm, p.mlpNorm);
  }

  private linear(y: DevicePtr, x16: DevicePtr, name: LinearName, accumulate: boolean): void {
    const s = linearShape(this.dims, name);
    gemmF16(this.g, y, s.out, x16, s.in, this.weights[name], s.in, this.rows, s.out, s.in, accumulate);
  }

  /** norm1(x) fp16, the input of q, k, v: `[rows, dim]`; x `[rows, dim]` f32. */
  attnInput(x: DevicePtr): DevicePtr {
    rmsNormHalf(this.g, this.xn, x, this.attnNorm, this.dims.eps, this.rows, this.dims.dim);
    return this.xn;
  }

  /** Causal self-attention of norm1(x) (attnInput's result), fp16 `[rows, dim]` into `out` (default a16). */
  attention(xn: DevicePtr, out: DevicePtr = this.a16): DevicePtr {
    const { dim, kvDim, heads, kvHeads, headDim, ropeTheta } = this.dims;
    const g = this.g, rows = this.rows;
    this.linear(this.q, xn, 'q', false);
    this.linear(this.k, xn, 'k', false);
    this.linear(this.v, xn, 'v', false);
    rope(g, this.q, rows, heads, headDim, ropeTheta, dim);
    rope(g, this.k, rows, kvHeads, headDim, ropeTheta, kvDim);
    toHalf(g, this.k16, this.k, rows * kvDim);
    toHalf(g, this.v16, this.v, rows * kvDim);
    attention(g, this.attn, this.q, this.k16, this.v16, rows, heads, kvHeads, headDim);
    toHalf(g, out, this.attn, rows * dim);
    return out;
  }

  /** x += o(a), in place; a fp16 `[rows, dim]`. */
  addAttentionOutput(x: DevicePtr, a16: DevicePtr): void {
    this.linear(x, a16, 'o', true);
  }

  /** norm2(h) fp16, the input of gate and up. */
  mlpInput(h: DevicePtr): DevicePtr {
    rmsNormHalf(this.g, this.xn, h, this.mlpNorm, this.dims.eps, this.rows, this.dims.dim);
    return this.xn;
  }

  /** swiglu(gate(hn), up(hn)) fp16 `[rows, ffn]` into `out` (default m16), the input of down. */
  mlpHidden(hn: DevicePtr, out: DevicePtr = this.m16): DevicePtr {
    this.linear(this.gate, hn, 'gate', false);
    this.linear(this.up, hn, 'up', false);
    swigluHalf(this.g, out, this.gate, this.up, this.rows * this.dims.ffn);
    return out;
  }

  /** h += down(m), in place. */
  addMlpOutput(h: DevicePtr, m16: DevicePtr): void {
    this.linear(h, m16, 'down', true);
  }

  /** x ← layer(x), in place. */
  forward(x: DevicePtr): void {
    this.addAttentionOutput(x, this.attention(this.attnInput(x)));
    this.addMlpOutput(x, this.mlpHidden(this.mlpInput(x)));
  }
}
