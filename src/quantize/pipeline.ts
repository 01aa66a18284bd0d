import path from 'node:path';
import { QllamaError } from '../errors.js';
import { discoverModel } from '../formats/modelFolder.js';
import { WeightStore } from '../formats/weightStore.js';
import { Tokenizer } from '../tokenizer/index.js';
import { readCalibrationSource, sampleCalibration } from './calibration.js';
import { chooseActivationDtype, type ActivationDtype } from './activations.js';
import { embedSamples, readLayerParams } from './layerWeights.js';
import { CpuLayerCompute, rtnLayer, type LayerComputeOptions, type LinearEvent } from './layerQuantizer.js';
import { LINEAR_NAMES, layerDims, linearShape, type LinearName } from './layerRunner.js';
import { resolveQuantizeBackend, type QuantizeBackendKind } from './cuda/select.js';
import { outputFileName, writeQuantizedModel } from './save.js';
import { QuantizeState } from './state.js';
import type { LayerCompute, QuantizeSettings } from './types.js';

/** The source model cannot be quantized (already GPTQ, unsupported shapes). */
export class QuantizeInputError extends QllamaError {}

export interface CalibrationSpec {
  /** .jsonl/.json(.gz) documents (C4-style draws) or plain text (WikiText-2-style draws) */
  readonly file: string;
  /** JSON lines only: use documents [start, end) */
  readonly docs?: { start: number; end: number };
  /** force a draw style (default: documents for JSON lines, text otherwise) */
  readonly kind?: 'documents' | 'text';
  readonly nsamples: number;
  readonly seqlen: number;
  readonly seed: number;
}

export interface QuantizeProgress {
  readonly layer: number;
  readonly layers: number;
  /** fraction of the current layer done */
  readonly fraction: number;
  readonly what: string;
  readonly elapsedS: number;
  /** seconds left, estimated from this run's layers so far (undefined until there is a rate) */
  readonly etaS?: number;
}

export interface QuantizeModelOptions {
  readonly modelDir: string;
  readonly outDir: string;
  /** weights file inside modelDir, when it holds several */
  readonly weights?: string;
  readonly settings: QuantizeSettings;
  readonly trueSequential: boolean;
  /** round to nearest instead of GPTQ (no calibration) */
  readonly rtn: boolean;
  /** required unless rtn */
  readonly calibration?: CalibrationSpec;
  /** base of the output file name (default: the model folder's name) */
  readonly name?: string;
  readonly resume?: boolean;
  readonly force?: boolean;
  /** how calibration activations are kept between passes (default auto: f32 up to 2 GiB for both buffers, else fp16) */
  readonly activations?: ActivationDtype | 'auto';
  /** compute threads (default: $QLLAMA_CPU_THREADS, else all cores); results do not depend on it */
  readonly threads?: number;
  /** where GPTQ's per-layer work runs (default cpu; auto takes a CUDA GPU when one answers); RTN always runs on the CPU */
  readonly backend?: QuantizeBackendKind;
  readonly log?: (line: string) => void;
  readonly onProgress?: (p: QuantizeProgress) => void;
  readonly onLinear?: (e: LinearEvent) => void;
}

export interface QuantizeResult {
  readonly outDir: string;
  readonly file: string;
  /** GPTQ's loss estimate per linear, `model.layers.<l>.<name>` → loss (this run's layers only) */
  readonly losses: Record<string, number>;
  readonly seconds: number;
}

/**
 * Quantizes an fp16 LLaMA folder layer by layer, holding one layer's weights and the
 * calibration activations (two `[nsamples, seqlen, dim]` buffers, f32 or fp16) at a time: calibration
 * windows are drawn and embedded, then each layer is read, quantized on the activations, and
 * moves them on through its quantized self. Each finished layer is checkpointed, so --resume
 * continues after the last one; the output folder appears only when complete.
 */
export async function quantizeModel(o: QuantizeModelOptions): Promise<QuantizeResult> {
  const log = o.log ?? (() => {});
  const started = Date.now();
  const info = discoverModel(o.modelDir, { weights: o.weights });
  if (info.format !== 'fp16') {
    throw new QuantizeInputError(`${o.modelDir} is already GPTQ-quantized (${path.basename(info.weightsPath)}): pass the fp16 model it was made from`);
  }
  const { config } = info;
  const dims = layerDims(config);
  checkShapes(o.settings, dims);
  if (!o.rtn && !o.calibration) throw new QuantizeInputError('GPTQ needs calibration data: pass --dataset, or --rtn for round-to-nearest');
  QuantizeState.checkOutput(o.outDir, o.force ?? false);
  const cal = o.rtn ? undefined : o.calibration;
  if (cal && cal.seqlen > config.maxPositionEmbeddings) {
    throw new QuantizeInputError(`--seqlen ${cal.seqlen} exceeds the model's context of ${config.maxPositionEmbeddings} tokens (max_position_embeddings)`);
  }
  // Draw the windows before anything is written, so bad data or a missing tokenizer leave no trace.
  let windows: Int32Array[] | undefined;
  if (cal) {
    const tokenizer = await Tokenizer.fromModelDir(o.modelDir);
    log(`drawing ${cal.nsamples} calibration windows of ${cal.seqlen} tokens from ${cal.file} (seed ${cal.seed})`);
    windows = sampleCalibration(readCalibrationSource(cal.file, cal.docs, cal.kind), tokenizer, cal);
  }

  const backend = cal ? resolveQuantizeBackend(o.backend ?? 'cpu', dims, log) : 'cpu';
  const actsDtype = cal ? chooseActivationDtype(o.activations ?? 'auto', cal.nsamples, cal.seqlen, dims.dim) : undefined;
  const name = o.name ?? defaultName(o.modelDir);
  const fileName = outputFileName(name, o.settings);
  const run = {
    version: 1, source: path.resolve(info.weightsPath), settings: o.settings, trueSequential: o.trueSequential, rtn: o.rtn,
    calibration: cal ? { ...cal, file: path.resolve(cal.file) } : null, fileName, activations: actsDtype ?? null,
  };
  const state = await QuantizeState.begin(o.outDir, run, { resume: o.resume ?? false, force: o.force ?? false, log });
  const store = WeightStore.open(info.weightsPath);
  let compute: LayerCompute | undefined;
  try {
    if (cal && windows && actsDtype) {
      const perSample = cal.seqlen * dims.dim;
      const acts = state.finishedLayers > 0 ? state.loadActs(actsDtype, cal.nsamples, perSample) : embedSamples(store, config, windows, actsDtype);
      windows = undefined;
      const co: LayerComputeOptions = { store, config, acts, seqlen: cal.seqlen, settings: o.settings, trueSequential: o.trueSequential, onLinear: o.onLinear };
      compute = backend === 'cuda' ? (await import('./cuda/cudaLayerCompute.js')).CudaLayerCompute.create(co, log) : new CpuLayerCompute(co, o.threads);
    }
    const losses: Record<string, number> = {};
    const first = state.finishedLayers;
    for (let l = first; l < config.numLayers; l++) {
      const report = (fraction: number, what: string): void => {
        const elapsedS = (Date.now() - started) / 1000;
        const doneLayers = l - first + fraction;
        const etaS = doneLayers > 0.05 ? (elapsedS / doneLayers) * (config.numLayers - l - fraction) : undefined;
        o.onProgress?.({ layer: l, layers: config.numLayers, fraction, what, elapsedS, etaS });
      };
      report(0, 'reading weights');
      const results = compute ? await compute.quantizeLayer(l, report) : rtnLayer(readLayerParams(store, config, l), dims, o.settings);
      for (const n of LINEAR_NAMES) losses[`model.layers.${l}.${n}`] = results[n].loss;
      report(1, 'saving checkpoint');
      await state.saveLayer(l, results, compute?.activations());
    }
    compute?.dispose();
    compute = undefined;
    log(`writing ${fileName}`);
    const file = await writeQuantizedModel({
      workDir: state.workDir, sourceDir: o.modelDir, source: store, config, fileName,
      layerFiles: Array.from({ length: config.numLayers }, (_, l) => state.layerFile(l)), settings: o.settings, trueSequential: o.trueSequential,
    });
    await state.finish();
    return { outDir: o.outDir, file: path.join(o.outDir, path.basename(file)), losses, seconds: (Date.now() - started) / 1000 };
  } finally {
    compute?.dispose();
    store.close();
  }
}

/** Packing needs whole int32 words along both dimensions of every linear; groups must fit. */
function checkShapes(s: QuantizeSettings, dims: ReturnType<typeof layerDims>): void {
  for (const name of LINEAR_NAMES as readonly LinearName[]) {
    const { out, in: inF } = linearShape(dims, name);
    if ((inF * s.bits) % 32 !== 0 || (out * s.bits) % 32 !== 0) {
      throw new QuantizeInputError(`${name}_proj is ${out}×${inF}: at ${s.bits} bits its dimensions do not fill whole 32-bit words, so it cannot be stored in the GPTQ layout`);
    }
    if (s.groupSize !== -1 && inF % s.groupSize !== 0) {
      throw new QuantizeInputError(`--groupsize ${s.groupSize} does not divide ${name}_proj's ${inF} inputs: use a divisor (e.g. 128, 64, 32) or -1`);
    }
  }
}

/** The model folder's name, or its parent's when the folder is just `fp16`/`hf`-style. */
function defaultName(dir: string): string {
  const abs = path.resolve(dir);
  const base = path.basename(abs);
  return /^(fp16|fp32|bf16|float16|hf|main|model|original)$/i.test(base) ? path.basename(path.dirname(abs)) : base;
}
