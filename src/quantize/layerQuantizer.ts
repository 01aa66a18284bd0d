import type { LlamaConfig } from '../formats/hfConfig.js';
import type { WeightStore } from '../formats/weightStore.js';
import { Activations } from './activations.js';
import { QuantEngine } from './engine.js';
import { gptqQuantize } from './gptq.js';
import { HessianAccumulator } from './hessian.js';
import { LINEAR_NAMES, LayerRunner, layerDims, linearShape, type LayerParams, type LinearName } from './layerRunner.js';
import { readLayerParams } from './layerWeights.js';
import { rtnQuantize } from './rtn.js';
import { dequantize, type LayerCompute, type QuantizedLinear, type QuantizeSettings } from './types.js';

/** What the caller may look at after each linear is quantized (tests compute errors from it). */
export interface LinearEvent {
  readonly layer: number;
  readonly name: LinearName;
  /** original weights `[out, in]` */
  readonly weight: Float32Array;
  /** the Hessian GPTQ used, 2/n·ΣXXᵀ `[in, in]` (undamped) */
  readonly hessian: Float64Array;
  readonly nsamples: number;
  readonly result: QuantizedLinear;
}

export interface LayerJob {
  readonly runner: LayerRunner;
  readonly settings: QuantizeSettings;
  /** GPTQ-for-LLaMa --true-sequential: each sub-group sees the outputs of the quantized ones before it */
  readonly trueSequential: boolean;
  readonly layer: number;
  /** the SIMD/threads engine the runner uses (Hessian sums then live in its memory) */
  readonly engine?: QuantEngine;
  readonly onLinear?: (e: LinearEvent) => void;
  /** fraction of this layer done, and what is running */
  readonly onProgress?: (fraction: number, what: string) => void;
}

/** Largest MLP hidden state kept between the last two passes instead of recomputed. */
export const HIDDEN_CACHE_BYTES = 512 * 1024 * 1024;

/** Sub-groups in GPTQ-for-LLaMa's true-sequential order; members share one input, hence one Hessian. */
const SUBGROUPS: readonly (readonly LinearName[])[] = [['k', 'v', 'q'], ['o'], ['up', 'gate'], ['down']];

/**
 * Quantizes one decoder layer with GPTQ on calibration activations and moves them through it:
 * sample s of `acts` (`[seqlen, dim]`, f32 or fp16, its input to the layer) becomes the quantized
 * layer's output. `spare` holds as many samples of the same size (the attention output in
 * true-sequential mode). Each pass reads a sample into the runner's f32 buffer, runs in f32,
 * and writes back what must be kept. Only the passes a sub-group needs run: [k,v,q]
 * needs norm1(x); [o] the attention output, kept in `spare`; [up,gate] norm2(x + o(a)), after
 * which x holds that residual; [down] the MLP hidden state; a last pass finishes x += down(·).
 * With an engine (`hessianSlots`), the Hessian sums live in its memory; true-sequential mode
 * fills and reads them one after another, so they share one slot.
 */
export function quantizeLayer(job: LayerJob, params: LayerParams, acts: Activations, spare: Activations, seqlen: number): Record<LinearName, QuantizedLinear> {
  const { runner, settings } = job;
  const dims = runner.dims;
  const n = acts.count;
  const size = seqlen * dims.dim;
  const x = runner.x.subarray(0, size);
  const passes = job.trueSequential ? 5 : 2;
  const units = passes * n + LINEAR_NAMES.length * Math.max(1, n / 2);
  let done = 0;
  const tick = (amount: number, what: string): void => {
    done += amount;
    job.onProgress?.(Math.min(1, done / units), what);
  };
  const results = {} as Record<LinearName, QuantizedLinear>;
  const quantize = (names: readonly LinearName[], h: HessianAccumulator): void => {
    const hessian = h.hessian();
    for (const name of names) {
      tick(0, `${name}_proj`);
      const { out, in: inF } = linearShape(dims, name);
      const weight = params.linear[name];
      const result = gptqQuantize(weight, hessian, out, inF, settings);
      results[name] = result;
      params.linear[name] = dequantize(result);
      job.onLinear?.({ layer: job.layer, name, weight, hessian, nsamples: h.nsamples, result });
      tick(Math.max(1, n / 2), `${name}_proj`);
    }
  };
  const e = job.engine;
  const shared = job.trueSequential;
  const hAttn = new HessianAccumulator(dims.dim, e, shared ? 'hessian' : 'hessian.attn');
  const hO = new HessianAccumulator(dims.dim, e, shared ? 'hessian' : 'hessian.o');
  const hMlp = new HessianAccumulator(dims.dim, e, shared ? 'hessian' : 'hessian.mlp');
  const hDown = new HessianAccumulator(dims.ffn, e, shared ? 'hessian' : 'hessian.down');

  if (!job.trueSequential) {
    // One pass through the original layer captures every input; then all seven are quantized.
    for (let s = 0; s < n; s++) {
      acts.read(s, x, size);
      const xn = runner.attnInput(params, x, seqlen);
      hAttn.add(xn, seqlen);
      const a = runner.attention(params, xn, seqlen);
      hO.add(a, seqlen);
      runner.addAttentionOutput(params, x, a, seqlen);
      const hn = runner.mlpInput(params, x, seqlen);
      hMlp.add(hn, seqlen);
      hDown.add(runner.mlpHidden(params, hn, seqlen), seqlen);
      tick(1, 'capturing inputs');
    }
    quantize(SUBGROUPS[0], hAttn);
    quantize(SUBGROUPS[1], hO);
    quantize(SUBGROUPS[2], hMlp);
    quantize(SUBGROUPS[3], hDown);
    for (let s = 0; s < n; s++) {
      acts.read(s, x, size);
      runner.forward(params, x, seqlen);
      acts.write(s, x, size);
      tick(1, 'layer outputs');
    }
    return results;
  }

  for (let s = 0; s < n; s++) {
    acts.read(s, x, size);
    hAttn.add(runner.attnInput(params, x, seqlen), seqlen);
    tick(1, 'inputs of k, v, q');
  }
  quantize(SUBGROUPS[0], hAttn);
  for (let s = 0; s < n; s++) {
    acts.read(s, x, size);
    const a = runner.attention(params, runner.attnInput(params, x, seqlen), seqlen);
    hO.add(a, seqlen);
    spare.write(s, a, size);
    tick(1, 'inputs of o');
  }
  quantize(SUBGROUPS[1], hO);
  const y = runner.y.subarray(0, size);
  for (let s = 0; s < n; s++) {
    acts.read(s, x, size);
    spare.read(s, y, size);
    runner.addAttentionOutput(params, x, y, seqlen);
    acts.write(s, x, size);
    hMlp.add(runner.mlpInput(params, x, seqlen), seqlen);
    tick(1, 'inputs of up, gate');
  }
  quantize(SUBGROUPS[2], hMlp);
  // down's input does not change when down is quantized: keep it for the last pass when it is
  // small enough (it is ffn/dim ≈ 2.7× the activations), else compute it again.
  const hidden: Float32Array[] = [];
  const keepHidden = n * seqlen * dims.ffn * 4 <= HIDDEN_CACHE_BYTES;
  for (let s = 0; s < n; s++) {
    acts.read(s, x, size);
    const m = runner.mlpHidden(params, runner.mlpInput(params, x, seqlen), seqlen);
    hDown.add(m, seqlen);
    if (keepHidden) hidden.push(m.slice());
    tick(1, 'inputs of down');
  }
  quantize(SUBGROUPS[3], hDown);
  for (let s = 0; s < n; s++) {
    acts.read(s, x, size);
    const m = keepHidden ? hidden[s] : runner.mlpHidden(params, runner.mlpInput(params, x, seqlen), seqlen);
    runner.addMlpOutput(params, x, m, seqlen);
    acts.write(s, x, size);
    tick(1, 'layer outputs');
  }
  return results;
}

/** Round-to-nearest for a whole layer: no calibration data needed. */
export function rtnLayer(params: LayerParams, dims: LayerRunner['dims'], settings: QuantizeSettings): Record<LinearName, QuantizedLinear> {
  const results = {} as Record<LinearName, QuantizedLinear>;
  for (const name of LINEAR_NAMES) {
    const { out, in: inF } = linearShape(dims, name);
    results[name] = rtnQuantize(params.linear[name], out, inF, settings);
  }
  return results;
}

/** What every LayerCompute is made from. */
export interface LayerComputeOptions {
  readonly store: WeightStore;
  readonly config: LlamaConfig;
  /** the calibration activations entering the first layer to quantize */
  readonly acts: Activations;
  readonly seqlen: number;
  readonly settings: QuantizeSettings;
  readonly trueSequential: boolean;
  readonly onLinear?: (e: LinearEvent) => void;
}

/** The CPU implementation: quantizeLayer above on the SIMD/threads engine, activations in host memory. */
export class CpuLayerCompute implements LayerCompute {
  private readonly spare: Activations;
  private readonly engine: QuantEngine | undefined;
  private readonly runner: LayerRunner;

  constructor(private readonly o: LayerComputeOptions, threads?: number) {
    this.spare = Activations.alloc(o.acts.dtype, o.trueSequential ? o.acts.count : 0, o.acts.perSample);
    this.engine = QuantEngine.create(threads);
    this.runner = new LayerRunner(layerDims(o.config), o.seqlen, this.engine);
  }

  quantizeLayer(layer: number, onProgress: (fraction: number, what: string) => void): Promise<Record<LinearName, QuantizedLinear>> {
    const { o } = this;
    const params = readLayerParams(o.store, o.config, layer);
    const job: LayerJob = { runner: this.runner, engine: this.engine, settings: o.settings, trueSequential: o.trueSequential, layer, onLinear: o.onLinear, onProgress };
    return Promise.resolve(quantizeLayer(job, params, o.acts, this.spare, o.seqlen));
  }

  activations(): Activations {
    return this.o.acts;
  }

  dispose(): void {
    this.engine?.dispose();
  }
}
