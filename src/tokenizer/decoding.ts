/**
 * Ids to text. Whole-sequence decode and the streaming decoder share one path (piece → UTF-8 bytes →
 * a WHATWG TextDecoder), so the concatenation of every `push` plus `flush` equals `decode(ids)`
 * exactly, including replacement characters for invalid byte sequences.
 */
import { TextDecoder } from 'node:util';

/** How one id renders; supplied by the Tokenizer. */
export interface PieceRenderer {
  /**
   * The UTF-8 bytes of one id, or undefined when it renders nothing (a skipped special token).
   * `atStart` is true until something has been rendered: the dummy-prefix space is dropped there.
   */
  render(id: number, atStart: boolean, skipSpecial: boolean): Uint8Array | undefined;
}

// ignoreBOM keeps a U+FEFF the model produced instead of silently eating it at the start.
const newUtf8Decoder = (): TextDecoder => new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

export function decodeIds(renderer: PieceRenderer, ids: readonly number[], skipSpecial: boolean): string {
  const chunks: Uint8Array[] = [];
  let atStart = true;
  for (const id of ids) {
    const bytes = renderer.render(id, atStart, skipSpecial);
    if (bytes === undefined) continue;
    atStart = false;
    chunks.push(bytes);
  }
  return newUtf8Decoder().decode(Buffer.concat(chunks));
}

/** Decodes ids one at a time; never returns half a UTF-8 character. */
export class StreamDecoder {
  private readonly utf8 = newUtf8Decoder();
  private atStart: boolean;

  constructor(
    private readonly renderer: PieceRenderer,
    private readonly skipSpecial: boolean,
    continuation = false,
  ) {
    this.atStart = !continuation;
  }

  /** Text completed by this id; an incomplete multi-byte character is held back until its last byte. */
  push(id: number): string {
    const bytes = this.renderer.render(id, this.atStart, this.skipSpecial);
    if (bytes === undefined) return '';
    this.atStart = false;
    return this.utf8.decode(bytes, { stream: true });
  }

  /** Whatever is still held back (an unfinished character becomes U+FFFD, as in `decode`). */
  flush(): string {
    return this.utf8.decode();
  }
}
