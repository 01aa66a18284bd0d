/**
 * The LLaMA tokenizer: SentencePiece (`tokenizer.model`) or Hugging Face `tokenizer.json`, plus the
 * special and added tokens a model folder's config files declare. Text ⇄ ids, with a streaming
 * decoder that never emits half a UTF-8 character.
 */
import { access } from 'node:fs/promises';
import path from 'node:path';
import { AddedTokenSplitter, type AddedToken } from './addedTokens.js';
import { decodeIds, StreamDecoder, type PieceRenderer } from './decoding.js';
import { TokenizerLoadError } from './errors.js';
import { readModelDirTokenConfig, SPECIAL_ROLES, type ModelDirTokenConfig, type SpecialRole } from './modelDirConfig.js';
import { SentencePieceTokenModel } from './sentencepiece.js';
import { loadSentencePieceModel } from './sentencepieceModel.js';
import { loadTokenizerJson } from './tokenizerJson.js';
import type { TokenModel } from './tokenModel.js';

export { TokenizerLoadError } from './errors.js';
export { StreamDecoder } from './decoding.js';
export type { AddedToken } from './addedTokens.js';

export interface EncodeOptions {
  /** Prepend the BOS id (default false). */
  addBos?: boolean;
  /**
   * Match special and added tokens written in the text (`</s>`, `[PAD]`) as single ids (default
   * true, as Hugging Face does). Pass false for untrusted user text.
   */
  parseSpecial?: boolean;
}

export interface DecodeOptions {
  /** Leave out special tokens (`<s>`, `</s>`, `[PAD]`); default true, like SentencePiece. */
  skipSpecial?: boolean;
}

export interface StreamDecodeOptions extends DecodeOptions {
  /**
   * The ids continue text the reader already has (a completion after its prompt): the first
   * piece keeps its word-boundary space, which `decode` of a fresh sequence drops.
   */
  continuation?: boolean;
}

const SPACE_SYMBOL = '\u2581'; // '▁'
// SentencePiece renders <unk> as " ⁇ " in decoded text (its default unk_surface).
const UNK_SURFACE = Buffer.from(' \u2047 ', 'utf8');

const exists = (file: string): Promise<boolean> =>
  access(file).then(
    () => true,
    () => false,
  );

export class Tokenizer implements PieceRenderer {
  readonly bosId: number;
  readonly eosId: number;
  readonly unkId: number;
  readonly padId?: number;
  /** Number of ids: the model's pieces plus added tokens past them (StableVicuna: 32001). */
  readonly vocabSize: number;

  private readonly addedById = new Map<number, AddedToken>();
  private readonly addedByContent = new Map<string, number>();
  private readonly splitter: AddedTokenSplitter;

  private constructor(
    private readonly model: TokenModel,
    added: readonly AddedToken[],
    ids: Readonly<Record<'bos' | 'eos' | 'unk', number>> & { pad?: number },
  ) {
    for (const t of added) {
      // Several files may name the same token; any of them calling it special makes it special.
      const prev = this.addedById.get(t.id);
      this.addedById.set(t.id, prev === undefined ? t : { ...prev, special: prev.special || t.special });
      if (!this.addedByContent.has(t.content)) this.addedByContent.set(t.content, t.id);
    }
    this.bosId = ids.bos;
    this.eosId = ids.eos;
    this.unkId = ids.unk;
    if (ids.pad !== undefined) this.padId = ids.pad;
    this.vocabSize = Math.max(model.size, ...[...this.addedById.keys()].map((id) => id + 1));
    // Control pieces (<s>, </s>, <unk>) are matched in text too, as Hugging Face's LlamaTokenizer does.
    const whole: AddedToken[] = [...this.addedById.values()];
    for (let id = 0; id < model.size; id++) {
      const piece = model.piece(id);
      if (model.isControl(id) && piece !== undefined && !this.addedById.has(id)) {
        whole.push({ id, content: piece, special: true, lstrip: false, rstrip: false });
      }
    }
    this.splitter = new AddedTokenSplitter(whole);
  }

  /**
   * Loads the tokenizer of a Hugging Face model folder: `tokenizer.model` if present, else
   * `tokenizer.json`; special ids and added tokens from tokenizer_config.json,
   * special_tokens_map.json, added_tokens.json and config.json.
   */
  static async fromModelDir(dir: string): Promise<Tokenizer> {
    const spmFile = path.join(dir, 'tokenizer.model');
    const jsonFile = path.join(dir, 'tokenizer.json');
    let model: TokenModel;
    let added: readonly AddedToken[] = [];
    if (await exists(spmFile)) {
      model = new SentencePieceTokenModel(await loadSentencePieceModel(spmFile));
    } else if (await exists(jsonFile)) {
      ({ model, added } = await loadTokenizerJson(jsonFile));
    } else {
      throw new TokenizerLoadError(
        `${dir} has neither tokenizer.model nor tokenizer.json: copy the tokenizer files of the model into it`,
      );
    }
    return Tokenizer.assemble(model, added, await readModelDirTokenConfig(dir), dir);
  }

  /** Combines a token model with the folder's config: added tokens first, then special ids. */
  private static assemble(model: TokenModel, fileAdded: readonly AddedToken[], cfg: ModelDirTokenConfig, dir: string): Tokenizer {
    const added: AddedToken[] = [...fileAdded];
    const byContent = new Map<string, number>();
    const idOf = (content: string): number | undefined => byContent.get(content) ?? model.pieceToId(content);
    for (const t of fileAdded) byContent.set(t.content, t.id);
    for (const spec of cfg.added) {
      if (spec.id !== undefined) {
        added.push({ ...spec, id: spec.id });
        byContent.set(spec.content, spec.id);
      }
    }
    // Tokens only named in a special-token map (StableVicuna's "[PAD]" without added_tokens.json)
    // get the next free id, as transformers' add_special_tokens does.
    let nextId = Math.max(model.size, ...added.map((t) => t.id + 1));
    for (const spec of cfg.added) {
      if (spec.id !== undefined) continue;
      const id = idOf(spec.content) ?? nextId++;
      added.push({ ...spec, id });
      byContent.set(spec.content, id);
    }

    const resolved: Partial<Record<SpecialRole, number>> = {};
    for (const role of SPECIAL_ROLES) {
      const content = cfg.tokens[role];
      const fromTokens = content === undefined ? undefined : idOf(content);
      const fromModel = role === 'unk' ? model.unkId : role === 'bos' ? model.bosId : role === 'eos' ? model.eosId : model.padId;
      // BOS/EOS: config.json's ids are what the model was trained with; early Vicuna conversions
      // name "</s>" as BOS in special_tokens_map.json by mistake. UNK: the tokenizer file itself.
      // PAD: the tokenizer files (StableVicuna's "[PAD]" = 32000 while config.json says 0).
      const order =
        role === 'unk' ? [fromModel, fromTokens, cfg.ids.unk]
        : role === 'pad' ? [fromTokens, cfg.ids.pad, fromModel]
        : [cfg.ids[role], fromTokens, fromModel];
      resolved[role] = order.find((id) => id !== undefined);
    }
    const { bos, eos, unk, pad } = resolved;
    if (bos === undefined || eos === undefined || unk === undefined) {
      const missing = (['bos', 'eos', 'unk'] as const).filter((r) => resolved[r] === undefined).join(', ');
      throw new TokenizerLoadError(
        `cannot tell the ${missing} token of the tokenizer in ${dir}: add "${missing.split(', ')[0]}_token" to its tokenizer_config.json`,
      );
    }
    return new Tokenizer(model, added, { bos, eos, unk, pad });
  }

  /** Text to ids; special and added tokens written in the text become one id each. */
  encode(text: string, opts: EncodeOptions = {}): number[] {
    const ids: number[] = opts.addBos === true ? [this.bosId] : [];
    const parts = opts.parseSpecial === false ? [{ text }] : this.splitter.split(text);
    for (const part of parts) {
      if ('id' in part) {
        ids.push(part.id);
        continue;
      }
      // A loop, not push(...x): a whole corpus is hundreds of thousands of ids.
      for (const id of this.model.encode(part.text)) ids.push(id);
    }
    return ids;
  }

  /** SentencePiece decode: '▁' → ' ', the leading dummy-prefix space dropped, byte pieces as UTF-8. */
  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    return decodeIds(this, ids, opts.skipSpecial ?? true);
  }

  /** A decoder for ids arriving one by one; its pushes plus flush equal `decode` of the same ids. */
  createStreamDecoder(opts: StreamDecodeOptions = {}): StreamDecoder {
    return new StreamDecoder(this, opts.skipSpecial ?? true, opts.continuation ?? false);
  }

  idToPiece(id: number): string {
    const piece = this.addedById.get(id)?.content ?? this.model.piece(id);
    if (piece === undefined) throw new RangeError(`token id ${id} is outside the vocabulary (0..${this.vocabSize - 1})`);
    return piece;
  }

  pieceToId(piece: string): number | undefined {
    return this.addedByContent.get(piece) ?? this.model.pieceToId(piece);
  }

  isSpecial(id: number): boolean {
    const added = this.addedById.get(id);
    if (added !== undefined) return added.special;
    return (
      this.model.isControl(id) || id === this.bosId || id === this.eosId || id === this.unkId || id === this.padId
    );
  }

  /**
   * PieceRenderer: the bytes one id contributes to decoded text. An id past the tokenizer's last piece renders
   * nothing: a model whose vocabulary is larger than its tokenizer's (a synthetic checkpoint, a vocabulary padded
   * for the weights' shapes) can produce one (LoadedModel warns at load).
   */
  render(id: number, atStart: boolean, skipSpecial: boolean): Uint8Array | undefined {
    if (Number.isInteger(id) && id >= this.vocabSize) return undefined;
    const added = this.addedById.get(id);
    if (added !== undefined) return added.special && skipSpecial ? undefined : Buffer.from(added.content, 'utf8');
    const piece = this.idToPiece(id);
    if (this.isSpecial(id)) {
      if (!skipSpecial) return Buffer.from(piece, 'utf8');
      return id === this.unkId ? UNK_SURFACE : undefined;
    }
    const byte = this.model.byteValue(id);
    if (byte >= 0) return Uint8Array.of(byte);
    const text = atStart && this.model.stripsLeadingSpace && piece.startsWith(SPACE_SYMBOL) ? piece.slice(1) : piece;
    return Buffer.from(text.replaceAll(SPACE_SYMBOL, ' '), 'utf8');
  }
}
