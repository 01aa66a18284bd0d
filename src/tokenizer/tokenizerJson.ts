/**
 * Hugging Face `tokenizer.json` for SentencePiece-style BPE (what LlamaTokenizerFast writes): a BPE
 * model with vocab + ranked merges and byte fallback, the LLaMA normalizer (Prepend '▁' + Replace
 * ' '→'▁') or the Metaspace pre-tokenizer, and added_tokens. Byte-level (GPT-2 style) tokenizers
 * are a different scheme and are rejected with a clear error.
 */
import type { AddedToken } from './addedTokens.js';
import { bpeMerge, type MergeRule } from './bpe.js';
import { TokenizerLoadError } from './errors.js';
import { isObject, readJsonObject, type Json } from './modelDirConfig.js';
import { parseBytePiece, type TokenModel } from './tokenModel.js';

/** One text transformation step, from the normalizer or the pre-tokenizer. */
type TextStep =
  /** Metaspace skips the prefix when the text already starts with it; the Prepend normalizer does not. */
  | { readonly kind: 'prepend'; readonly prefix: string; readonly unlessPresent: boolean }
  | { readonly kind: 'replace'; readonly from: string; readonly to: string }
  | { readonly kind: 'unicode'; readonly form: 'NFC' | 'NFD' | 'NFKC' | 'NFKD' };

interface Pipeline {
  readonly steps: readonly TextStep[];
  /** Metaspace with split: BPE runs on each word that starts at a '▁' separately. */
  readonly splitOn: string | undefined;
}

export interface TokenizerJson {
  readonly model: TokenModel;
  readonly added: readonly AddedToken[];
}

class UnsupportedError extends TokenizerLoadError {}

/** Reads `file`, a tokenizer.json. */
export async function loadTokenizerJson(file: string): Promise<TokenizerJson> {
  const json = await readJsonObject(file);
  if (json === undefined) throw new TokenizerLoadError(`${file} does not exist`);
  return parseTokenizerJson(json, file);
}

export function parseTokenizerJson(json: Json, file = 'tokenizer.json'): TokenizerJson {
  // Annotated so that TypeScript narrows after `if (...) fail(...)`.
  const fail: (what: string) => never = (what) => {
    throw new UnsupportedError(
      `${file}: ${what}. Only SentencePiece-style BPE tokenizer.json files (LLaMA) are supported: ` +
        'use the model\'s tokenizer.model instead, or re-download the file if it is damaged.',
    );
  };
  const m = json.model;
  if (!isObject(m) || m.type !== 'BPE') fail(`model.type is ${isObject(m) ? String(m.type) : 'missing'}, not BPE`);
  if (!isObject(m.vocab)) fail('model.vocab is missing');
  if (!Array.isArray(m.merges)) fail('model.merges is missing');
  if (typeof m.continuing_subword_prefix === 'string' && m.continuing_subword_prefix !== '') fail('continuing_subword_prefix is set');
  if (typeof m.end_of_word_suffix === 'string' && m.end_of_word_suffix !== '') fail('end_of_word_suffix is set');

  const vocab = new Map<string, number>();
  for (const [piece, id] of Object.entries(m.vocab)) {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) fail(`vocab entry "${piece}" has id ${String(id)}`);
    vocab.set(piece, id);
  }
  const ranks = new Map<string, number>();
  m.merges.forEach((merge: unknown, rank: number) => {
    let pair: [string, string] | undefined;
    if (typeof merge === 'string') {
      // Old format "left right": the pieces of SentencePiece vocabularies hold no ' ' (it is '▁').
      const cut = merge.indexOf(' ', 1);
      if (cut > 0) pair = [merge.slice(0, cut), merge.slice(cut + 1)];
    } else if (Array.isArray(merge) && merge.length === 2 && typeof merge[0] === 'string' && typeof merge[1] === 'string') {
      pair = [merge[0], merge[1]];
    }
    if (pair === undefined) fail(`merge ${rank} is malformed`);
    const key = mergeKey(pair[0], pair[1]);
    if (!ranks.has(key)) ranks.set(key, rank);
  });

  const normalizer = textSteps(json.normalizer, 'normalizer', fail);
  const pre = preTokenizer(json.pre_tokenizer, fail);
  const added = addedTokens(json.added_tokens, fail);
  const unkToken = typeof m.unk_token === 'string' ? m.unk_token : undefined;
  const bpe = new HfBpeTokenModel({
    vocab,
    ranks,
    pipeline: { steps: [...normalizer, ...pre.steps], splitOn: pre.splitOn },
    byteFallback: m.byte_fallback === true,
    fuseUnk: m.fuse_unk === true,
    ignoreMerges: m.ignore_merges === true,
    unkId: unkToken === undefined ? undefined : vocab.get(unkToken),
    stripsLeadingSpace: decoderStripsLeadingSpace(json.decoder, fail),
    size: Math.max(vocab.size, ...[...vocab.values()].map((id) => id + 1)),
  });
  return { model: bpe, added };
}

const mergeKey = (left: string, right: string): string => `${left}\u0000${right}`;

function textSteps(v: unknown, where: string, fail: (what: string) => never): TextStep[] {
  if (v === null || v === undefined) return [];
  if (!isObject(v)) return fail(`${where} is not an object`);
  switch (v.type) {
    case 'Sequence': {
      const list = v.normalizers ?? v.pretokenizers;
      if (!Array.isArray(list)) return fail(`${where} Sequence has no list`);
      return list.flatMap((x) => textSteps(x, where, fail));
    }
    case 'Prepend':
      return typeof v.prepend === 'string' ? [{ kind: 'prepend', prefix: v.prepend, unlessPresent: false }] : fail(`${where} Prepend has no text`);
    case 'Replace': {
      const pattern = isObject(v.pattern) ? v.pattern.String : undefined;
      if (typeof pattern !== 'string' || typeof v.content !== 'string') return fail(`${where} Replace is not a plain string replace`);
      return [{ kind: 'replace', from: pattern, to: v.content }];
    }
    case 'NFC':
    case 'NFD':
    case 'NFKC':
    case 'NFKD':
      return [{ kind: 'unicode', form: v.type }];
    default:
      return fail(`${where} type ${String(v.type)} is not supported`);
  }
}

function preTokenizer(v: unknown, fail: (what: string) => never): Pipeline {
  if (v === null || v === undefined) return { steps: [], splitOn: undefined };
  if (!isObject(v) || v.type !== 'Metaspace') return fail(`pre_tokenizer ${isObject(v) ? String(v.type) : ''} is not supported`);
  const replacement = typeof v.replacement === 'string' ? v.replacement : '\u2581';
  // Older files say add_prefix_space, newer ones prepend_scheme ("first" = only at the text's
  // start; after an added token nothing is prepended).
  const prepend = v.prepend_scheme !== undefined ? v.prepend_scheme !== 'never' : v.add_prefix_space !== false;
  const steps: TextStep[] = [{ kind: 'replace', from: ' ', to: replacement }];
  if (prepend) steps.push({ kind: 'prepend', prefix: replacement, unlessPresent: true });
  return { steps, splitOn: v.split === false ? undefined : replacement };
}

function decoderStripsLeadingSpace(v: unknown, fail: (what: string) => never): boolean {
  if (v === null || v === undefined) return false;
  if (!isObject(v)) return fail('decoder is not an object');
  switch (v.type) {
    case 'Sequence':
      return Array.isArray(v.decoders) && v.decoders.some((d) => decoderStripsLeadingSpace(d, fail));
    case 'Strip':
      return v.content === ' ' && typeof v.start === 'number' && v.start > 0;
    case 'Metaspace':
      return v.prepend_scheme !== undefined ? v.prepend_scheme !== 'never' : v.add_prefix_space !== false;
    case 'Replace':
    case 'ByteFallback':
    case 'Fuse':
      return false;
    default:
      return fail(`decoder type ${String(v.type)} is not supported`);
  }
}

function addedTokens(v: unknown, fail: (what: string) => never): AddedToken[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) return fail('added_tokens is not a list');
  return v.map((t, i): AddedToken => {
    if (!isObject(t) || typeof t.id !== 'number' || typeof t.content !== 'string') return fail(`added_tokens[${i}] is malformed`);
    return { id: t.id, content: t.content, special: t.special === true, lstrip: t.lstrip === true, rstrip: t.rstrip === true };
  });
}

interface HfBpeOptions {
  readonly vocab: Map<string, number>;
  readonly ranks: Map<string, number>;
  readonly pipeline: Pipeline;
  readonly byteFallback: boolean;
  readonly fuseUnk: boolean;
  readonly ignoreMerges: boolean;
  readonly unkId: number | undefined;
  readonly stripsLeadingSpace: boolean;
  readonly size: number;
}

/** HF BPE: merges applied by rank (lowest first, leftmost on a tie), like SentencePiece by score. */
class HfBpeTokenModel implements TokenModel, MergeRule {
  readonly size: number;
  readonly unkId: number | undefined;
  readonly bosId: number | undefined;
  readonly eosId: number | undefined;
  readonly padId = undefined;
  readonly stripsLeadingSpace: boolean;
  private readonly pieces: string[] = [];
  private readonly byteIds = new Int32Array(256).fill(-1);

  constructor(private readonly o: HfBpeOptions) {
    this.size = o.size;
    this.unkId = o.unkId;
    this.bosId = o.vocab.get('<s>');
    this.eosId = o.vocab.get('</s>');
    this.stripsLeadingSpace = o.stripsLeadingSpace;
    for (const [piece, id] of o.vocab) {
      this.pieces[id] = piece;
      const b = parseBytePiece(piece);
      if (b >= 0 && this.byteIds[b] < 0) this.byteIds[b] = id;
    }
  }

  piece(id: number): string | undefined {
    return this.pieces[id];
  }

  pieceToId(piece: string): number | undefined {
    return this.o.vocab.get(piece);
  }

  byteValue(id: number): number {
    const p = this.pieces[id];
    return p === undefined ? -1 : parseBytePiece(p);
  }

  isControl(id: number): boolean {
    return id === this.unkId;
  }

  priority(text: string, start: number, mid: number, end: number): number | undefined {
    const rank = this.o.ranks.get(mergeKey(text.slice(start, mid), text.slice(mid, end)));
    // Only merges whose result is a vocabulary piece count, as in HF tokenizers.
    return rank === undefined || !this.o.vocab.has(text.slice(start, end)) ? undefined : -rank;
  }

  encode(text: string): number[] {
    let s = text;
    for (const step of this.o.pipeline.steps) {
      if (step.kind === 'replace') s = s.replaceAll(step.from, step.to);
      else if (step.kind === 'unicode') s = s.normalize(step.form);
      else if (s.length > 0 && !(step.unlessPresent && s.startsWith(step.prefix))) s = step.prefix + s;
    }
    const ids: number[] = [];
    for (const word of this.words(s)) this.encodeWord(word, ids);
    return ids;
  }

  private words(s: string): string[] {
    const sep = this.o.pipeline.splitOn;
    if (sep === undefined || s.length === 0) return s.length > 0 ? [s] : [];
    // Each word starts at a separator (Metaspace's "merged with next" split).
    const words: string[] = [];
    let start = 0;
    for (let i = s.indexOf(sep, 1); i >= 0; i = s.indexOf(sep, i + sep.length)) {
      if (i > start) words.push(s.slice(start, i));
      start = i;
    }
    words.push(s.slice(start));
    return words;
  }

  private encodeWord(word: string, out: number[]): void {
    const whole = this.o.vocab.get(word);
    if (this.o.ignoreMerges && whole !== undefined) {
      out.push(whole);
      return;
    }
    const ends: number[] = [];
    for (let i = 0; i < word.length; ) {
      i += (word.codePointAt(i) ?? 0) > 0xffff ? 2 : 1;
      ends.push(i);
    }
    const seg = bpeMerge(word, ends, this);
    let prevUnk = false;
    for (let k = 0; k < seg.count; k++) {
      const symbol = word.slice(seg.starts[k], seg.ends[k]);
      const id = this.o.vocab.get(symbol);
      if (id !== undefined) {
        out.push(id);
        prevUnk = false;
      } else if (this.o.byteFallback && [...Buffer.from(symbol, 'utf8')].every((b) => this.byteIds[b] >= 0)) {
        for (const b of Buffer.from(symbol, 'utf8')) out.push(this.byteIds[b]);
        prevUnk = false;
      } else if (this.unkId !== undefined) {
        if (!(this.o.fuseUnk && prevUnk)) out.push(this.unkId);
        prevUnk = true;
      }
    }
  }
}
