/**
 * `--backend cuda`: the LayerCompute that keeps the calibration activations on the GPU (f32 residual
 * stream `[nsamples, seqlen, dim]`) and runs each layer's passes there, in the order and with the
 * passes of layerQuantizer.ts's quantizeLayer: true-sequential [k,v,q] → [o] (attention outputs kept
 * fp16 in `spare`) → [up,gate] → [down] (MLP hidden states kept fp16 when they fit, else recomputed)
 * → the layer's outputs; otherwise one capturing pass, all seven linears, one output pass.
 * Each Hessian is factored once (factor.ts) for the linears that share it. The host side of the
 * activations (`activations()`) is refreshed for the checkpoint after every layer.
 */
import type { DevicePtr } from '../../backends/cuda/driver.js';
import { halfArrayToFloat } from '../../backends/cpu/kernels/half.js';
import type { Activations } from '../activations.js';
import type { LayerComputeOptions, LinearEvent } from '../layerQuantizer.js';
import { LINEAR_NAMES, layerDims, linearShape, type LayerDims, type LinearName } from '../layerRunner.js';
import type { LayerCompute, QuantizedLinear } from '../types.js';
import { DeviceHessian } from './deviceHessian.js';
import { DeviceLayer, readHalfLayer } from './deviceLayer.js';
import { factorHessian, freeFactor } from './factor.js';
import { gib, offset, QuantGpu } from './gpu.js';
import { gptqLinearGpu } from './gptqSolve.js';
import { toFloat, toHalf } from './ops.js';

const SUBGROUPS: readonly (readonly LinearName[])[] = [['k', 'v', 'q'], ['o'], ['up', 'gate'], ['down']];
/** Device memory left free after the MLP hidden-state cache, for the factorizations and GPTQ buffers. */
const HIDDEN_CACHE_MARGIN = 6 * 1024 ** 3;

export class CudaLayerCompute implements LayerCompute {
  private readonly dims: LayerDims;
  private readonly n: number;
  private readonly x: DevicePtr; // [n, rows, dim] f32
  private readonly spare: DevicePtr | null; // [n, rows, dim] fp16 (true-sequential)
  private hidden: DevicePtr | null = null; // [n, rows, ffn] fp16 when it fits
  private readonly staging: DevicePtr; // one sample, fp16: uploads and downloads of fp16 activations
  private readonly xtmp: DevicePtr | null; // one sample f32 (the residual of the capturing pass)
  private readonly layer: DeviceLayer;
  private readonly hessians: DeviceHessian[];
  private hostFresh = true;

  private constructor(private readonly g: QuantGpu, private readonly o: LayerComputeOptions, private readonly log: (line: string) => void) {
    this.dims = layerDims(o.config);
    const { dim, ffn } = this.dims;
    const rows = o.seqlen;
    this.n = o.acts.count;
    const sample = rows * dim;
    this.x = g.alloc(this.n * sample * 4, 'the calibration activations (f32)');
    this.spare = o.trueSequential ? g.alloc(this.n * sample * 2, 'the attention outputs (fp16)') : null;
    this.staging = g.alloc(sample * 2, 'an activation staging buffer');
    this.xtmp = o.trueSequential ? null : g.alloc(sample * 4, 'a residual scratch');
    this.layer = new DeviceLayer(g, this.dims, rows);
    const widest = Math.max(dim, ffn);
    this.hessians = o.trueSequential
      ? [new DeviceHessian(g, widest, rows)]
      : [dim, dim, dim, ffn].map((c) => new DeviceHessian(g, c, rows));
    this.upload(o.acts);
    if (o.trueSequential) {
      const bytes = this.n * rows * ffn * 2;
      if (g.freeBytes() - bytes >= HIDDEN_CACHE_MARGIN + widest * widest * 4 * 2) this.hidden = g.alloc(bytes, 'the MLP hidden states (fp16)');
    }
    log(`cuda: ${g.deviceName}, ${gib(g.mem.allocated)} of device memory held${this.hidden ? ' (MLP hidden states cached)' : ''}`);
  }

  static create(o: LayerComputeOptions, log: (line: string) => void = () => {}): CudaLayerCompute {
    const g = QuantGpu.create();
    try {
      return new CudaLayerCompute(g, o, log);
    } catch (e) {
      g.dispose();
      throw e;
    }
  }

  private sampleX(s: number): DevicePtr {
    return offset(this.x, s * this.o.seqlen * this.dims.dim * 4);
  }
  private sampleSpare(s: number): DevicePtr {
    return offset(this.spare as DevicePtr, s * this.o.seqlen * this.dims.dim * 2);
  }
  private sampleHidden(s: number): DevicePtr {
    return offset(this.hidden as DevicePtr, s * this.o.seqlen * this.dims.ffn * 2);
  }

  /** Host activations → device f32 (fp16 ones are widened on the device). */
  private upload(acts: Activations): void {
    const size = this.o.seqlen * this.dims.dim;
    for (let s = 0; s < this.n; s++) {
      const bytes = acts.sampleBytes(s);
      if (acts.dtype === 'f32') {
        this.g.upload(this.sampleX(s), bytes);
      } else {
        this.g.upload(this.staging, bytes);
        toFloat(this.g, this.sampleX(s), this.staging, size);
      }
    }
    this.g.sync();
  }

  activations(): Activations {
    const acts = this.o.acts;
    if (this.hostFresh) return acts;
    const size = this.o.seqlen * this.dims.dim;
    for (let s = 0; s < this.n; s++) {
      const bytes = acts.sampleBytes(s);
      if (acts.dtype === 'f32') {
        this.g.download(bytes, this.sampleX(s));
      } else {
        toHalf(this.g, this.staging, this.sampleX(s), size);
        this.g.download(bytes, this.staging);
      }
    }
    this.hostFresh = true;
    return acts;
  }

  async quantizeLayer(layer: number, onProgress: (fraction: number, what: string) => void): Promise<Record<LinearName, QuantizedLinear>> {
    const { o, g, n } = this;
    const L = this.layer;
    const rows = o.seqlen;
    L.upload(readHalfLayer(o.store, o.config, this.dims, layer));
    this.hostFresh = false;
    const passes = o.trueSequential ? 5 : 2;
    const units = passes * n + LINEAR_NAMES.length * Math.max(1, n / 2);
    let done = 0;
    const tick = (amount: number, what: string): void => {
      done += amount;
      onProgress(Math.min(1, done / units), what);
    };
    /** per-sample work, with the GPU waited on every 16 samples so progress tracks it */
    const pass = async (what: string, body: (s: number) => void): Promise<void> => {
      for (let s = 0; s < n; s++) {
        body(s);
        if (s % 16 === 15 || s === n - 1) {
          g.sync();
          tick(Math.min(16, s % 16 + 1), what);
          await new Promise<void>((r) => setImmediate(r)); // let timers (progress, signals) run
        }
      }
    };
    const results = {} as Record<LinearName, QuantizedLinear>;
    const quantize = (names: readonly LinearName[], h: DeviceHessian): void => {
      const hDev = h.finish();
      const f = factorHessian(g, hDev, h.cols, o.settings);
      try {
        for (const name of names) {
          tick(0, `${name}_proj`);
          const { out, in: inF } = linearShape(this.dims, name);
          const w = L.weights[name];
          const original = o.onLinear ? halfArrayToFloat(g.download(new Uint16Array(out * inF), w)) : undefined;
          const result = gptqLinearGpu(g, w, out, inF, f, o.settings, w);
          results[name] = result;
          if (o.onLinear && original) {
            const e: LinearEvent = { layer, name, weight: original, hessian: h.download(), nsamples: h.nsamples, result };
            o.onLinear(e);
          }
          tick(Math.max(1, n / 2), `${name}_proj`);
        }
      } finally {
        freeFactor(g, f);
      }
    };
    const { dim, ffn } = this.dims;

    if (!o.trueSequential) {
      const [hAttn, hO, hMlp, hDown] = this.hessians;
      hAttn.reset(dim); hO.reset(dim); hMlp.reset(dim); hDown.reset(ffn);
      const xt = this.xtmp as DevicePtr;
      await pass('capturing inputs', (s) => {
        g.copy(xt, this.sampleX(s), rows * dim * 4);
        const xn = L.attnInput(xt);
        hAttn.add(xn, rows);
        const a = L.attention(xn);
        hO.add(a, rows);
        L.addAttentionOutput(xt, a);
        const hn = L.mlpInput(xt);
        hMlp.add(hn, rows);
        const m = L.mlpHidden(hn);
        hDown.add(m, rows);
      });
      quantize(SUBGROUPS[0], hAttn);
      quantize(SUBGROUPS[1], hO);
      quantize(SUBGROUPS[2], hMlp);
      quantize(SUBGROUPS[3], hDown);
      await pass('layer outputs', (s) => L.forward(this.sampleX(s)));
      return results;
    }

    const h = this.hessians[0];
    h.reset(dim);
    await pass('inputs of k, v, q', (s) => h.add(L.attnInput(this.sampleX(s)), rows));
    quantize(SUBGROUPS[0], h);
    h.reset(dim);
    await pass('inputs of o', (s) => h.add(L.attention(L.attnInput(this.sampleX(s)), this.sampleSpare(s)), rows));
    quantize(SUBGROUPS[1], h);
    h.reset(dim);
    await pass('inputs of up, gate', (s) => {
      L.addAttentionOutput(this.sampleX(s), this.sampleSpare(s));
      h.add(L.mlpInput(this.sampleX(s)), rows);
    });
    quantize(SUBGROUPS[2], h);
    h.reset(ffn);
    await pass('inputs of down', (s) => {
      const m = L.mlpHidden(L.mlpInput(this.sampleX(s)), this.hidden ? this.sampleHidden(s) : undefined);
      h.add(m, rows);
    });
    quantize(SUBGROUPS[3], h);
    await pass('layer outputs', (s) => {
      const m = this.hidden ? this.sampleHidden(s) : L.mlpHidden(L.mlpInput(this.sampleX(s)));
      L.addMlpOutput(this.sampleX(s), m);
    });
    return results;
  }

  dispose(): void {
    this.log(`cuda: peak device memory ${gib(this.g.mem.peak)} (the quantizer's allocations)`);
    this.g.dispose();
  }
}

