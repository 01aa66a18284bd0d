/**
 * What the Tokenizer needs from a vocabulary + segmentation algorithm, whichever file it came from
 * (`tokenizer.model` or `tokenizer.json`). Special and added tokens are handled above this layer.
 */
export interface TokenModel {
  /** Number of ids the model itself defines (added tokens may extend it). */
  readonly size: number;
  /** Id of the unknown piece, if the model has one. */
  readonly unkId: number | undefined;
  /** BOS/EOS/PAD the model file declares, used when no config file names them. */
  readonly bosId: number | undefined;
  readonly eosId: number | undefined;
  readonly padId: number | undefined;
  /**
   * Whether decoding drops the space that starts the text (the one the dummy prefix added when
   * encoding); SentencePiece's add_dummy_prefix, or a Strip/Metaspace decoder in tokenizer.json.
   */
  readonly stripsLeadingSpace: boolean;
  /** Encodes plain text (no special tokens in it): normalize, dummy prefix, segment, byte fallback. */
  encode(text: string): number[];
  /** The raw piece, e.g. '▁Hello', '<0x0A>', '<s>'; undefined past the model's ids. */
  piece(id: number): string | undefined;
  pieceToId(piece: string): number | undefined;
  /** The byte a byte-fallback piece `<0xXX>` stands for, or -1. */
  byteValue(id: number): number;
  /** Control or unknown pieces (`<s>`, `</s>`, `<unk>`): special, not text. */
  isControl(id: number): boolean;
}

/** Parses `<0xXX>` (SentencePiece's byte-fallback piece) to its byte, or -1. */
export function parseBytePiece(piece: string): number {
  if (piece.length !== 6 || !piece.startsWith('<0x') || piece[5] !== '>') return -1;
  const hex = piece.slice(3, 5);
  return /^[0-9A-Fa-f]{2}$/.test(hex) ? parseInt(hex, 16) : -1;
}
