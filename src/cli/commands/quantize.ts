import { UsageError } from '../../errors.js';
import type { GptqBits } from '../../formats/gptqTypes.js';
import { quantizeModel, type CalibrationSpec, type QuantizeProgress } from '../../quantize/pipeline.js';
import type { ActivationDtype } from '../../quantize/activations.js';
import type { QuantizeBackendKind } from '../../quantize/cuda/select.js';
import type { QuantizeSettings } from '../../quantize/types.js';
import { boolOpt, defineCommand, numberOpt, stringOpt, type OptionValues } from '../command.js';

export const quantizeCommand = defineCommand({
  name: 'quantize',
  summary: 'Quantize an fp16 LLaMA folder to GPTQ (GPTQ-for-LLaMa layout and file names), layer by layer on the CPU or a CUDA GPU.',
  usage: 'qllama quantize <fp16-model-dir> --out <dir> --dataset <c4|wikitext2|file> [--data-file <file>] [--nsamples 128] [--seqlen 2048] [--wbits 4] [--groupsize 128] [--act-order] [--true-sequential] [--backend auto|cpu|cuda] [...]',
  maxPositionals: 1,
  options: {
    out: { type: 'string', value: 'dir', description: 'output folder (created when the run completes; refused if it exists unless --force)' },
    dataset: { type: 'string', value: 'c4|wikitext2|file', description: 'calibration data: a .jsonl/.json[.gz] file (random documents, as GPTQ-for-LLaMa draws C4) or a text file (random windows, as it draws WikiText-2); c4/wikitext2 force that style on --data-file' },
    'data-file': { type: 'string', value: 'file', description: 'the file for --dataset c4|wikitext2 (e.g. c4-train.00000-of-01024.json.gz)' },
    docs: { type: 'string', value: 'A:B', description: 'JSON lines only: draw from documents A..B-1' },
    nsamples: { type: 'string', value: 'N', description: 'calibration windows', default: '128' },
    seqlen: { type: 'string', value: 'N', description: 'tokens per window', default: '2048' },
    seed: { type: 'string', value: 'N', description: 'seed of the draws (Python random, as GPTQ-for-LLaMa)', default: '0' },
    wbits: { type: 'string', value: '2|3|4|8', description: 'bits per weight', default: '4' },
    groupsize: { type: 'string', value: 'N', description: 'input columns per scale/zero group; -1 for one per row', default: '128' },
    'act-order': { type: 'boolean', description: 'quantize columns by descending activation magnitude (g_idx in the file)' },
    'true-sequential': { type: 'boolean', description: 'quantize [k,v,q], [o], [up,gate], [down] in turn, each on the outputs of the quantized ones before' },
    'static-groups': { type: 'boolean', description: 'with --act-order: fix group parameters up front so g_idx stays in order (faster kernels)' },
    sym: { type: 'boolean', description: 'symmetric quantization (zero point mid-grid)' },
    damp: { type: 'string', value: 'F', description: 'dampening, fraction of the mean Hessian diagonal', default: '0.01' },
    rtn: { type: 'boolean', description: 'round to nearest instead of GPTQ (baseline; no calibration data needed)' },
    name: { type: 'string', value: 'base', description: 'base of the output file name (default: the model folder name)' },
    weights: { type: 'string', value: 'file', description: 'weights file in the model folder, when it holds several' },
    resume: { type: 'boolean', description: 'continue an interrupted run (same flags) after its last finished layer' },
    threads: { type: 'string', value: 'N', description: 'compute threads (default: $QLLAMA_CPU_THREADS, else all cores); results do not depend on it' },
    backend: { type: 'string', value: 'auto|cpu|cuda', description: 'where GPTQ runs: cuda (a CUDA GPU; calibration activations in GPU memory), cpu, or auto (cuda when a GPU answers)', default: 'auto' },
    activations: { type: 'string', value: 'auto|f32|f16', description: 'how calibration activations are kept between passes (auto: f32 up to 2 GiB, else fp16, half the memory)', default: 'auto' },
    force: { type: 'boolean', description: 'replace an existing output folder, or discard an unfinished run' },
  },
  details: [
    'examples:',
    '  qllama quantize ./vicuna-13b-hf --out ./vicuna-13b-gptq --dataset c4 --data-file c4-train.00000-of-01024.json.gz \\',
    '      --wbits 4 --groupsize 128 --true-sequential --act-order',
    '  qllama quantize ./tiny --out ./tiny-rtn --rtn --wbits 3',
    'Progress and an ETA go to stderr; the output file path is printed on stdout.',
  ].join('\n'),
  async run(values, positionals) {
    const modelDir = positionals[0];
    if (modelDir === undefined) throw new UsageError('pass the fp16 model folder: qllama quantize <fp16-model-dir> --out <dir> --dataset <file>');
    const outDir = stringOpt(values, 'out');
    if (outDir === undefined) throw new UsageError('--out <dir> is required');
    const settings = parseSettings(values);
    const rtn = boolOpt(values, 'rtn');
    const calibration = rtn ? undefined : parseCalibration(values);
    const bar = progressPrinter();
    const result = await quantizeModel({
      modelDir, outDir, settings, rtn, calibration,
      trueSequential: boolOpt(values, 'true-sequential'),
      weights: stringOpt(values, 'weights'),
      name: stringOpt(values, 'name'),
      resume: boolOpt(values, 'resume'),
      force: boolOpt(values, 'force'),
      threads: numberOpt(values, 'threads', { integer: true, min: 1, max: 256 }),
      activations: parseActivations(values),
      backend: parseBackend(values),
      log: (line) => bar.line(line),
      onProgress: (p) => bar.update(p),
    });
    bar.line(`done in ${formatSeconds(result.seconds)}`);
    process.stdout.write(`${result.file}\n`);
    return 0;
  },
});

function parseBackend(values: OptionValues): QuantizeBackendKind {
  const v = stringOpt(values, 'backend') ?? 'auto';
  if (v !== 'auto' && v !== 'cpu' && v !== 'cuda') throw new UsageError(`--backend must be auto, cpu or cuda, got "${v}"`);
  return v;
}

function parseActivations(values: OptionValues): ActivationDtype | 'auto' {
  const v = stringOpt(values, 'activations') ?? 'auto';
  if (v !== 'auto' && v !== 'f32' && v !== 'f16') throw new UsageError(`--activations must be auto, f32 or f16, got "${v}"`);
  return v;
}

function parseSettings(values: OptionValues): QuantizeSettings {
  const bits = numberOpt(values, 'wbits', { integer: true }) ?? 4;
  if (![2, 3, 4, 8].includes(bits)) throw new UsageError(`--wbits must be 2, 3, 4 or 8 (the GPTQ layout's widths), got ${bits}`);
  const groupSize = numberOpt(values, 'groupsize', { integer: true, min: -1 }) ?? 128;
  if (groupSize === 0) throw new UsageError('--groupsize must be positive, or -1 for one group per row');
  const actOrder = boolOpt(values, 'act-order');
  const staticGroups = boolOpt(values, 'static-groups');
  if (staticGroups && groupSize === -1) throw new UsageError('--static-groups needs groups (--groupsize N)');
  return {
    bits: bits as GptqBits, groupSize, actOrder, staticGroups, sym: boolOpt(values, 'sym'),
    damp: numberOpt(values, 'damp', { min: 0, max: 1 }) ?? 0.01,
  };
}

function parseCalibration(values: OptionValues): CalibrationSpec {
  const dataset = stringOpt(values, 'dataset');
  if (dataset === undefined) throw new UsageError('--dataset is required for GPTQ (a .jsonl/.json.gz or text file, or c4|wikitext2 with --data-file); use --rtn for round-to-nearest');
  const dataFile = stringOpt(values, 'data-file');
  let file = dataset;
  let kind: CalibrationSpec['kind'];
  if (dataset === 'c4' || dataset === 'wikitext2') {
    if (dataFile === undefined) {
      throw new UsageError(dataset === 'c4'
        ? '--dataset c4 needs the C4 file: pass --data-file c4-train.00000-of-01024.json.gz (JSON lines with a "text" field, gzip or not)'
        : '--dataset wikitext2 needs the text: pass --data-file wiki.train.raw (plain text, or JSON lines with a "text" field)');
    }
    file = dataFile;
    kind = dataset === 'c4' ? 'documents' : 'text';
  } else if (dataFile !== undefined) {
    throw new UsageError('--data-file goes with --dataset c4|wikitext2; otherwise pass the file as --dataset');
  }
  const docsRaw = stringOpt(values, 'docs');
  let docs: CalibrationSpec['docs'];
  if (docsRaw !== undefined) {
    const m = /^(\d+):(\d+)$/.exec(docsRaw);
    if (!m) throw new UsageError(`--docs expects A:B (document indices, end exclusive), got "${docsRaw}"`);
    docs = { start: Number(m[1]), end: Number(m[2]) };
  }
  return {
    file, kind, docs,
    nsamples: numberOpt(values, 'nsamples', { integer: true, min: 1 }) ?? 128,
    seqlen: numberOpt(values, 'seqlen', { integer: true, min: 2 }) ?? 2048,
    seed: numberOpt(values, 'seed', { integer: true, min: 0 }) ?? 0,
  };
}

/** A one-line progress bar on a terminal; one line per finished layer otherwise. */
function progressPrinter(): { update(p: QuantizeProgress): void; line(text: string): void } {
  const tty = process.stderr.isTTY === true;
  let open = false;
  let lastLayer = -1;
  const clear = (): void => {
    if (open) process.stderr.write('\r\x1b[K');
    open = false;
  };
  return {
    update(p) {
      const eta = p.etaS === undefined ? '?' : formatSeconds(p.etaS);
      const text = `layer ${p.layer + 1}/${p.layers} ${bar(p.fraction)} ${Math.round(p.fraction * 100)}% ${p.what} | ${formatSeconds(p.elapsedS)} elapsed, ETA ${eta}`;
      if (tty) {
        process.stderr.write(`\r\x1b[K${text}`);
        open = true;
      } else if (p.fraction === 1 && p.layer !== lastLayer) {
        lastLayer = p.layer;
        process.stderr.write(`${text}\n`);
      }
    },
    line(text) {
      clear();
      process.stderr.write(`${text}\n`);
    },
  };
}

function bar(fraction: number, width = 20): string {
  const full = Math.round(fraction * width);
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}]`;
}

function formatSeconds(s: number): string {
  if (s < 60) return `${s.toFixed(0)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}
