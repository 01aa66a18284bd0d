/**
 * Added tokens (special tokens such as `<s>`, `</s>`, StableVicuna's `[PAD]`, chat markers): they are
 * matched whole in the input text before segmentation and always become one id, as in Hugging Face
 * tokenizers. The text between them is encoded piece by piece by the token model.
 */

export interface AddedToken {
  readonly id: number;
  readonly content: string;
  /** Special tokens are skipped by `decode(ids, { skipSpecial: true })`. */
  readonly special: boolean;
  /** Also swallow the whitespace before / after the token (HF's lstrip / rstrip). */
  readonly lstrip: boolean;
  readonly rstrip: boolean;
}

/** A piece of input text: plain text to segment, or one added token's id. */
export type TextPart = { readonly text: string } | { readonly id: number };

const escapeRegExp = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Splits text on a fixed set of added tokens, leftmost match first, longest token on a tie. */
export class AddedTokenSplitter {
  private readonly pattern: RegExp | undefined;
  private readonly byGroup: readonly AddedToken[];

  constructor(tokens: readonly AddedToken[]) {
    // One alternation with a capture group per token; longer contents first so that, at the same
    // start, `<s>` never wins over a longer token beginning with it.
    this.byGroup = [...tokens].filter((t) => t.content.length > 0).sort((a, b) => b.content.length - a.content.length);
    const alternatives = this.byGroup.map(
      (t) => `(${t.lstrip ? '\\s*' : ''}${escapeRegExp(t.content)}${t.rstrip ? '\\s*' : ''})`,
    );
    this.pattern = alternatives.length > 0 ? new RegExp(alternatives.join('|'), 'gu') : undefined;
  }

  split(text: string): TextPart[] {
    if (this.pattern === undefined) return text.length > 0 ? [{ text }] : [];
    const parts: TextPart[] = [];
    let last = 0;
    for (const m of text.matchAll(this.pattern)) {
      const at = m.index ?? 0;
      if (at > last) parts.push({ text: text.slice(last, at) });
      const group = m.findIndex((g, i) => i > 0 && g !== undefined);
      parts.push({ id: this.byGroup[group - 1].id });
      last = at + m[0].length;
    }
    if (last < text.length) parts.push({ text: text.slice(last) });
    return parts;
  }
}
