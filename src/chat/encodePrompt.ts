import type { TextCodec } from '../generate/textCodec.js';

export interface SpecialTokenText {
  /** How BOS appears in rendered template text (LLaMA: "<s>"). */
  readonly bos: string;
  /** How EOS appears in rendered template text (LLaMA: "</s>"). */
  readonly eos: string;
}

export const LLAMA_SPECIAL_TEXT: SpecialTokenText = { bos: '<s>', eos: '</s>' };

/**
 * Encode a rendered chat prompt: the literal BOS/EOS strings that formats such as Vicuna v1.1
 * ("…</s>USER:") and LLaMA-2 ("</s><s>[INST]") put between turns become the BOS/EOS ids, and the
 * text between them is encoded on its own, as HF's slow LlamaTokenizer does with special tokens.
 * A BOS is prepended unless the text already starts with one (LLaMA-2, most Jinja templates).
 * Note: a user message that contains "</s>" literally is read as EOS too, as in transformers.
 */
export function encodeChatPrompt(codec: TextCodec, text: string, specials: SpecialTokenText = LLAMA_SPECIAL_TEXT): number[] {
  const ids: number[] = [];
  if (!text.startsWith(specials.bos)) ids.push(codec.bosId);
  let rest = text;
  while (rest.length > 0) {
    const b = rest.indexOf(specials.bos);
    const e = rest.indexOf(specials.eos);
    const next = b < 0 ? e : e < 0 ? b : Math.min(b, e);
    if (next < 0) {
      ids.push(...codec.encode(rest, { addBos: false }));
      break;
    }
    if (next > 0) ids.push(...codec.encode(rest.slice(0, next), { addBos: false }));
    const isBos = next === b;
    ids.push(isBos ? codec.bosId : codec.eosId);
    rest = rest.slice(next + (isBos ? specials.bos.length : specials.eos.length));
  }
  return ids;
}
