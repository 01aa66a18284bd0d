/**
 * SentencePiece encoding over a parsed `tokenizer.model`, matching the reference implementation
 * (and HF's legacy LlamaTokenizer): normalize, add the dummy prefix, spaces to '▁', segment with BPE
 * (or UNIGRAM), then byte fallback `<0xXX>` for symbols the vocabulary lacks.
 */
import { bpeMerge, type MergeRule } from './bpe.js';
import { ModelType, PieceType, type SentencePieceModel } from './sentencepieceModel.js';
import { parseBytePiece, type TokenModel } from './tokenModel.js';
import { unigramSegment, type UnigramVocab } from './unigram.js';

const SPACE_SYMBOL = '\u2581'; // '▁'
const UNK_PENALTY = 10; // SentencePiece's kUnkPenalty for unknown characters in UNIGRAM

export class SentencePieceTokenModel implements TokenModel, MergeRule {
  readonly size: number;
  readonly unkId: number | undefined;
  readonly bosId: number | undefined;
  readonly eosId: number | undefined;
  readonly padId: number | undefined;
  readonly stripsLeadingSpace: boolean;

  private readonly pieces: readonly string[];
  private readonly types: Uint8Array;
  private readonly scores: Float64Array;
  /** NORMAL, USER_DEFINED and UNUSED pieces: the ones segmentation may produce. */
  private readonly segmentable = new Map<string, number>();
  /** CONTROL, UNKNOWN and BYTE pieces: found by pieceToId, never produced by merging. */
  private readonly reserved = new Map<string, number>();
  private readonly byteIds = new Int32Array(256).fill(-1);
  private readonly byteOf: Int16Array;
  /** User-defined pieces by first UTF-16 unit, longest first: they are matched whole, never merged. */
  private readonly userDefined = new Map<string, string[]>();
  private readonly maxPieceChars: number;
  private readonly minScore: number;
  private readonly maxScore: number;

  constructor(private readonly model: SentencePieceModel) {
    const n = model.pieces.length;
    this.size = n;
    this.pieces = model.pieces.map((p) => p.piece);
    this.types = new Uint8Array(n);
    this.scores = new Float64Array(n);
    this.byteOf = new Int16Array(n).fill(-1);
    let maxChars = 1;
    let minScore = Infinity;
    let maxScore = -Infinity;
    model.pieces.forEach((p, id) => {
      this.types[id] = p.type;
      this.scores[id] = p.score;
      const isSegmentable =
        p.type === PieceType.NORMAL || p.type === PieceType.USER_DEFINED || p.type === PieceType.UNUSED;
      // First occurrence wins, as SentencePiece rejects duplicates anyway.
      const map = isSegmentable ? this.segmentable : this.reserved;
      if (!map.has(p.piece)) map.set(p.piece, id);
      if (p.type === PieceType.BYTE) {
        const b = parseBytePiece(p.piece);
        if (b >= 0) {
          this.byteOf[id] = b;
          if (this.byteIds[b] < 0) this.byteIds[b] = id;
        }
      }
      if (p.type === PieceType.USER_DEFINED) {
        const list = this.userDefined.get(p.piece[0]) ?? [];
        list.push(p.piece);
        list.sort((a, b) => b.length - a.length);
        this.userDefined.set(p.piece[0], list);
      }
      if (p.type === PieceType.NORMAL || p.type === PieceType.USER_DEFINED) maxChars = Math.max(maxChars, [...p.piece].length);
      if (p.type === PieceType.NORMAL) {
        minScore = Math.min(minScore, p.score);
        maxScore = Math.max(maxScore, p.score);
      }
    });
    this.maxPieceChars = maxChars;
    this.minScore = Number.isFinite(minScore) ? minScore : 0;
    this.maxScore = Number.isFinite(maxScore) ? maxScore : 0;
    const validId = (id: number): number | undefined => (id >= 0 && id < n ? id : undefined);
    const unk = validId(model.unkId);
    this.unkId = unk !== undefined && this.types[unk] === PieceType.UNKNOWN ? unk : this.firstOfType(PieceType.UNKNOWN);
    this.bosId = validId(model.bosId);
    this.eosId = validId(model.eosId);
    this.padId = validId(model.padId);
    this.stripsLeadingSpace = model.addDummyPrefix && !model.treatWhitespaceAsSuffix;
  }

  piece(id: number): string | undefined {
    return this.pieces[id];
  }

  pieceToId(piece: string): number | undefined {
    return this.reserved.get(piece) ?? this.segmentable.get(piece);
  }

  byteValue(id: number): number {
    return id >= 0 && id < this.size ? this.byteOf[id] : -1;
  }

  isControl(id: number): boolean {
    const t = this.types[id];
    return t === PieceType.CONTROL || t === PieceType.UNKNOWN;
  }

  /** MergeRule for BPE: the merged piece's score, if it is a piece. */
  priority(text: string, start: number, _mid: number, end: number): number | undefined {
    const id = this.segmentable.get(text.slice(start, end));
    return id === undefined ? undefined : this.scores[id];
  }

  encode(text: string): number[] {
    const normalized = this.normalize(text);
    if (normalized.length === 0) return [];
    return this.model.modelType === ModelType.UNIGRAM ? this.encodeUnigram(normalized) : this.encodeBpe(normalized);
  }

  /**
   * SentencePiece's normalizer for the settings LLaMA-style models use. Named rule sets other than
   * "identity" ship a precompiled character map that is not interpreted here; Unicode NFKC is the
   * approximation for them ("nmt_nfkc", "nfkc", ...).
   */
  private normalize(text: string): string {
    const m = this.model;
    let s = text;
    if (m.normalizerName.includes('nfkc')) s = s.normalize('NFKC');
    if (m.removeExtraWhitespaces) s = s.replace(/ {2,}/g, ' ').replace(/^ | $/g, '');
    if (s.length === 0) return '';
    if (m.addDummyPrefix) s = m.treatWhitespaceAsSuffix ? s + ' ' : ' ' + s;
    return m.escapeWhitespaces ? s.replaceAll(' ', SPACE_SYMBOL) : s;
  }

  private encodeBpe(text: string): number[] {
    // Initial symbols: user-defined pieces (frozen) or single code points.
    const ends: number[] = [];
    const frozen: boolean[] = [];
    for (let i = 0; i < text.length; ) {
      const match = this.matchUserDefined(text, i);
      const len = match > 0 ? match : (text.codePointAt(i) ?? 0) > 0xffff ? 2 : 1;
      i += len;
      ends.push(i);
      frozen.push(match > 0);
    }
    // Merges into UNUSED pieces are undone at the end (SentencePiece's resegmentation), so remember
    // which halves made each one.
    const halves = new Map<string, [string, string]>();
    const onMerge = (s: number, m: number, e: number): void => {
      const merged = text.slice(s, e);
      const id = this.segmentable.get(merged);
      if (id !== undefined && this.types[id] === PieceType.UNUSED) halves.set(merged, [text.slice(s, m), text.slice(m, e)]);
    };
    const seg = bpeMerge(text, ends, this, frozen, onMerge);
    const ids: number[] = [];
    for (let k = 0; k < seg.count; k++) this.emit(text.slice(seg.starts[k], seg.ends[k]), halves, ids);
    return ids;
  }

  private emit(symbol: string, halves: Map<string, [string, string]>, out: number[]): void {
    const id = this.pieceToId(symbol);
    if (id === undefined) {
      this.emitUnknown(symbol, out);
      return;
    }
    const split = this.types[id] === PieceType.UNUSED ? halves.get(symbol) : undefined;
    if (split === undefined) {
      out.push(id);
      return;
    }
    this.emit(split[0], halves, out);
    this.emit(split[1], halves, out);
  }

  /** Byte fallback: one `<0xXX>` per UTF-8 byte; without it (or a byte piece), the unknown id. */
  private emitUnknown(symbol: string, out: number[]): void {
    if (this.model.byteFallback) {
      for (const b of Buffer.from(symbol, 'utf8')) {
        const id = this.byteIds[b] >= 0 ? this.byteIds[b] : this.unkId;
        if (id !== undefined) out.push(id);
      }
    } else if (this.unkId !== undefined) {
      out.push(this.unkId);
    }
  }

  /** Length of the longest user-defined piece starting at `pos`, or 0. */
  private matchUserDefined(text: string, pos: number): number {
    if (this.userDefined.size === 0) return 0;
    const candidates = this.userDefined.get(text[pos]);
    if (candidates === undefined) return 0;
    for (const c of candidates) if (text.startsWith(c, pos)) return c.length;
    return 0;
  }

  private encodeUnigram(text: string): number[] {
    const vocab: UnigramVocab = {
      lookup: (piece) => {
        const id = this.segmentable.get(piece);
        return id === undefined || this.types[id] === PieceType.UNUSED ? undefined : id;
      },
      // SentencePiece scores user-defined pieces so that they always win over their parts.
      score: (id, len) => (this.types[id] === PieceType.USER_DEFINED ? len * this.maxScore - 0.1 : this.scores[id]),
      maxPieceChars: this.maxPieceChars,
      unkScore: this.minScore - UNK_PENALTY,
    };
    const ids: number[] = [];
    for (const p of unigramSegment(text, vocab)) {
      if (p.id !== undefined) ids.push(p.id);
      else this.emitUnknown(text.slice(p.start, p.end), ids);
    }
    return ids;
  }

  private firstOfType(type: PieceType): number | undefined {
    const i = this.types.indexOf(type);
    return i >= 0 ? i : undefined;
  }
}
