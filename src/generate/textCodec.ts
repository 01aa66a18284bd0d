/**
 * The slice of a tokenizer that generation and chat need. Declared here (not imported from
 * src/tokenizer) so generate/ and chat/ depend on a contract, not on one tokenizer: the real
 * SentencePiece tokenizer satisfies it structurally, and tests pass small fakes.
 */
export interface TextCodec {
  /** Text to ids. `addBos` prepends `bosId` (the tokenizer decides its default). */
  encode(text: string, opts?: { addBos?: boolean }): number[];
  /** Ids to text, whole sequence at once. */
  decode(ids: readonly number[]): string;
  /**
   * A decoder for ids that arrive one at a time: `push` returns only text that is final
   * (never half a UTF-8 character, leading-space rules applied once), `flush` the rest.
   */
  createStreamDecoder(opts?: { continuation?: boolean }): StreamDecoder;
  readonly bosId: number;
  readonly eosId: number;
}

export interface StreamDecoder {
  push(id: number): string;
  flush(): string;
}
