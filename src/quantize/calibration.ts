import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { QllamaError } from '../errors.js';
import { readJsonLines } from '../eval/datasetText.js';
import { PythonRandom } from './pythonRandom.js';

/** The calibration file cannot supply the requested windows. */
export class CalibrationDataError extends QllamaError {}

/**
 * Where calibration windows come from, as GPTQ-for-LLaMa's loaders draw them:
 *  - `documents` (get_c4): pick a random document until one is longer than the window, then a
 *    random window inside it — for JSON lines files (`.jsonl`, `.json`, optionally `.gz`, like
 *    C4's `c4-train.00000-of-01024.json.gz`) with a "text" field;
 *  - `text` (get_wikitext2): encode the whole text once, take random windows of it — for plain text.
 */
export type CalibrationSource =
  | { readonly kind: 'documents'; readonly docs: readonly string[]; readonly path: string }
  | { readonly kind: 'text'; readonly text: string; readonly path: string };

export interface TextEncoder {
  encode(text: string, options: { addBos: boolean; parseSpecial: boolean }): number[];
}

export interface CalibrationOptions {
  readonly nsamples: number;
  readonly seqlen: number;
  readonly seed: number;
}

/**
 * `kind` forces a draw style (`--dataset c4|wikitext2`); by default JSON lines files are drawn
 * as documents and anything else as text. Text from a JSON lines file is its documents joined
 * by a blank line, as get_wikitext2 joins the dataset's rows.
 */
export function readCalibrationSource(file: string, docs?: { start: number; end: number }, kind?: CalibrationSource['kind']): CalibrationSource {
  let raw: Buffer;
  try {
    raw = readFileSync(file);
  } catch (err) {
    throw new CalibrationDataError(`cannot read calibration data "${file}": ${(err as NodeJS.ErrnoException).code ?? String(err)}; check the path`);
  }
  const gz = file.endsWith('.gz');
  const text = (gz ? gunzipSync(raw) : raw).toString('utf8');
  const base = gz ? file.slice(0, -3) : file;
  const jsonLines = base.endsWith('.jsonl') || base.endsWith('.json');
  if (!jsonLines) {
    if (docs) throw new CalibrationDataError('a document range only applies to JSON lines calibration files');
    if (kind === 'documents') throw new CalibrationDataError(`${file} is not JSON lines (.jsonl/.json[.gz]): C4-style calibration draws documents from a "text" field`);
    return { kind: 'text', text, path: file };
  }
  const texts = readJsonLines(text, file, docs);
  return kind === 'text' ? { kind: 'text', text: texts.join('\n\n'), path: file } : { kind: 'documents', docs: texts, path: file };
}

/** `nsamples` windows of `seqlen` token ids (each starts wherever the draw put it; BOS only if the window starts a document). */
export function sampleCalibration(source: CalibrationSource, tokenizer: TextEncoder, options: CalibrationOptions): Int32Array[] {
  const { nsamples, seqlen, seed } = options;
  const rng = new PythonRandom(seed);
  const encode = (text: string): number[] => tokenizer.encode(text, { addBos: true, parseSpecial: false });
  const out: Int32Array[] = [];
  if (source.kind === 'text') {
    const ids = encode(source.text);
    if (ids.length < nsamples * seqlen || ids.length <= seqlen) {
      throw new CalibrationDataError(
        `${source.path} has ${ids.length} tokens, too short for ${nsamples} samples × ${seqlen} tokens: pass a longer file or lower --nsamples/--seqlen`,
      );
    }
    for (let s = 0; s < nsamples; s++) {
      const i = rng.randint(0, ids.length - seqlen - 1);
      out.push(Int32Array.from(ids.slice(i, i + seqlen)));
    }
    return out;
  }
  const { docs } = source;
  if (docs.length === 0) throw new CalibrationDataError(`${source.path} holds no documents`);
  const cache = new Map<number, number[]>();
  const short = new Set<number>();
  for (let s = 0; s < nsamples; s++) {
    let ids: number[];
    for (;;) {
      const d = rng.randint(0, docs.length - 1);
      ids = cache.get(d) ?? encode(docs[d]);
      // GPTQ-for-LLaMa accepts len ≥ seqlen, then randint(0, len − seqlen − 1) fails on len = seqlen; need one more
      if (ids.length > seqlen) {
        cache.set(d, ids);
        break;
      }
      short.add(d);
      if (short.size === docs.length) {
        throw new CalibrationDataError(
          `no document in ${source.path} is longer than ${seqlen} tokens: lower --seqlen or pass a file with longer documents`,
        );
      }
    }
    const i = rng.randint(0, ids.length - seqlen - 1);
    out.push(Int32Array.from(ids.slice(i, i + seqlen)));
  }
  // Sampling is with replacement; if the distinct documents drawn hold fewer tokens than the
  // samples ask for, the calibration set is mostly the same text over and over.
  let distinct = 0;
  for (const ids of cache.values()) distinct += ids.length;
  if (distinct < nsamples * seqlen) {
    throw new CalibrationDataError(
      `${source.path} is too short for ${nsamples} samples × ${seqlen} tokens: the ${cache.size} documents longer than ${seqlen} tokens that were drawn hold only ${distinct} tokens; pass more data or lower --nsamples/--seqlen`,
    );
  }
  return out;
}
