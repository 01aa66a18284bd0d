import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { QllamaError } from '../errors.js';

export class DatasetError extends QllamaError {}

/**
 * The text of an evaluation or calibration file: plain text as is; `.jsonl` (optionally `.gz`)
 * as its documents' `text` fields joined by a blank line, the way the C4 perplexity is usually
 * computed. `docs` selects a [start, end) range of documents.
 */
export function readDatasetText(path: string, docs?: { start: number; end: number }): string {
  let raw: Buffer;
  try {
    raw = readFileSync(path);
  } catch (err) {
    throw new DatasetError(`cannot read dataset "${path}": ${(err as NodeJS.ErrnoException).code ?? String(err)}; check the path`);
  }
  const gz = path.endsWith('.gz');
  const text = (gz ? gunzipSync(raw) : raw).toString('utf8');
  const base = gz ? path.slice(0, -3) : path;
  if (!base.endsWith('.jsonl') && !base.endsWith('.json')) {
    if (docs) throw new DatasetError('--docs only applies to .jsonl datasets');
    return text;
  }
  return readJsonLines(text, path, docs).join('\n\n');
}

/** The `text` field of every JSON line (c4-train.*.json.gz is JSON lines despite its name). */
export function readJsonLines(text: string, path: string, docs?: { start: number; end: number }): string[] {
  const out: string[] = [];
  const lines = text.split('\n');
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n].trim();
    if (line === '') continue;
    let doc: unknown;
    try {
      doc = JSON.parse(line);
    } catch {
      throw new DatasetError(`${path}:${n + 1} is not valid JSON: a .jsonl dataset needs one JSON object per line`);
    }
    if (typeof doc !== 'object' || doc === null || typeof (doc as { text?: unknown }).text !== 'string') {
      throw new DatasetError(`${path}:${n + 1} has no string "text" field`);
    }
    out.push((doc as { text: string }).text);
  }
  if (!docs) return out;
  if (docs.start < 0 || docs.end > out.length || docs.start >= docs.end) {
    throw new DatasetError(`document range ${docs.start}:${docs.end} is outside the ${out.length} documents of ${path}`);
  }
  return out.slice(docs.start, docs.end);
}
