/**
 * Reader for SentencePiece's `tokenizer.model`, a protobuf `ModelProto`
 * (sentencepiece/src/sentencepiece_model.proto). The schema below is a reflection subset holding only
 * the fields the encoder needs; protobuf skips the others, so newer files still load.
 */
import { readFile } from 'node:fs/promises';
import protobuf from 'protobufjs';
import { TokenizerLoadError } from './errors.js';

/** SentencePiece piece types, numbered as in the proto. */
export const PieceType = {
  NORMAL: 1,
  UNKNOWN: 2,
  CONTROL: 3,
  USER_DEFINED: 4,
  UNUSED: 5,
  BYTE: 6,
} as const;
export type PieceType = (typeof PieceType)[keyof typeof PieceType];

export const ModelType = { UNIGRAM: 1, BPE: 2, WORD: 3, CHAR: 4 } as const;
export type ModelType = (typeof ModelType)[keyof typeof ModelType];

export interface SentencePiece {
  readonly piece: string;
  readonly score: number;
  readonly type: PieceType;
}

/** The parsed model with proto2 defaults applied, so callers never see "unset". */
export interface SentencePieceModel {
  readonly pieces: readonly SentencePiece[];
  readonly modelType: ModelType;
  readonly byteFallback: boolean;
  readonly splitDigits: boolean;
  readonly treatWhitespaceAsSuffix: boolean;
  /** Special ids from the trainer spec; -1 means "none" (SentencePiece's convention). */
  readonly unkId: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  readonly normalizerName: string;
  readonly addDummyPrefix: boolean;
  readonly removeExtraWhitespaces: boolean;
  readonly escapeWhitespaces: boolean;
}

// Field numbers and defaults follow sentencepiece_model.proto. `edition: 'proto2'` gives fields
// explicit presence: without it protobufjs treats the schema as proto3 and drops explicit `false`
// values (LLaMA's remove_extra_whitespaces = false would read as the default true). Each message
// repeats it because protobufjs's JSON loader does not inherit it from the root.
const SCHEMA = {
  edition: 'proto2',
  nested: {
    ModelProto: {
      edition: 'proto2',
      fields: {
        pieces: { rule: 'repeated', type: 'SentencePiece', id: 1 },
        trainerSpec: { type: 'TrainerSpec', id: 2 },
        normalizerSpec: { type: 'NormalizerSpec', id: 3 },
      },
      nested: {
        SentencePiece: {
          edition: 'proto2',
          fields: {
            piece: { type: 'string', id: 1 },
            score: { type: 'float', id: 2 },
            type: { type: 'int32', id: 3 },
          },
        },
      },
    },
    TrainerSpec: {
      edition: 'proto2',
      fields: {
        modelType: { type: 'int32', id: 3 },
        vocabSize: { type: 'int32', id: 4 },
        treatWhitespaceAsSuffix: { type: 'bool', id: 24 },
        splitDigits: { type: 'bool', id: 25 },
        byteFallback: { type: 'bool', id: 35 },
        unkId: { type: 'int32', id: 40 },
        bosId: { type: 'int32', id: 41 },
        eosId: { type: 'int32', id: 42 },
        padId: { type: 'int32', id: 43 },
      },
    },
    NormalizerSpec: {
      edition: 'proto2',
      fields: {
        name: { type: 'string', id: 1 },
        addDummyPrefix: { type: 'bool', id: 3 },
        removeExtraWhitespaces: { type: 'bool', id: 4 },
        escapeWhitespaces: { type: 'bool', id: 5 },
      },
    },
  },
};

const modelProto = protobuf.Root.fromJSON(SCHEMA).lookupType('ModelProto');

/** Field values as protobufjs hands them back for this schema (unset fields are absent). */
interface RawPiece {
  piece?: string;
  score?: number;
  type?: number;
}
interface RawModel {
  pieces?: RawPiece[];
  trainerSpec?: Record<string, number | boolean | undefined>;
  normalizerSpec?: Record<string, string | boolean | undefined>;
}

const KNOWN_PIECE_TYPES = new Set<number>(Object.values(PieceType));
const KNOWN_MODEL_TYPES = new Set<number>(Object.values(ModelType));

function corrupt(file: string, what: string, cause?: unknown): TokenizerLoadError {
  return new TokenizerLoadError(
    `${file} is not a valid SentencePiece model (${what}). The file is corrupted or incomplete ` +
      '(a Git LFS pointer instead of the real file is a common cause): download tokenizer.model again.',
    cause === undefined ? undefined : { cause },
  );
}

/** Parses the bytes of a `tokenizer.model`; `file` only names it in errors. */
export function parseSentencePieceModel(bytes: Uint8Array, file = 'tokenizer.model'): SentencePieceModel {
  let raw: RawModel;
  try {
    raw = modelProto.toObject(modelProto.decode(bytes)) as RawModel;
  } catch (err) {
    throw corrupt(file, `protobuf decoding failed: ${(err as Error).message}`, err);
  }
  const rawPieces = raw.pieces ?? [];
  if (rawPieces.length === 0) throw corrupt(file, 'it has no pieces');
  const pieces = rawPieces.map((p, i): SentencePiece => {
    const type = p.type ?? PieceType.NORMAL;
    if (typeof p.piece !== 'string' || p.piece.length === 0) throw corrupt(file, `piece ${i} has no text`);
    if (!KNOWN_PIECE_TYPES.has(type)) throw corrupt(file, `piece ${i} has unknown type ${type}`);
    return { piece: p.piece, score: p.score ?? 0, type: type as PieceType };
  });

  const t = raw.trainerSpec ?? {};
  const n = raw.normalizerSpec ?? {};
  const int = (v: unknown, dflt: number): number => (typeof v === 'number' ? v : dflt);
  const bool = (v: unknown, dflt: boolean): boolean => (typeof v === 'boolean' ? v : dflt);
  const modelType = int(t.modelType, ModelType.UNIGRAM);
  if (!KNOWN_MODEL_TYPES.has(modelType)) throw corrupt(file, `unknown model type ${modelType}`);
  const checkId = (name: string, id: number): number => {
    if (id >= pieces.length) throw corrupt(file, `${name} ${id} is past the ${pieces.length} pieces`);
    return id;
  };
  return {
    pieces,
    modelType: modelType as ModelType,
    byteFallback: bool(t.byteFallback, false),
    splitDigits: bool(t.splitDigits, false),
    treatWhitespaceAsSuffix: bool(t.treatWhitespaceAsSuffix, false),
    unkId: checkId('unk_id', int(t.unkId, 0)),
    bosId: checkId('bos_id', int(t.bosId, 1)),
    eosId: checkId('eos_id', int(t.eosId, 2)),
    padId: checkId('pad_id', int(t.padId, -1)),
    normalizerName: typeof n.name === 'string' ? n.name : 'nmt_nfkc',
    addDummyPrefix: bool(n.addDummyPrefix, true),
    removeExtraWhitespaces: bool(n.removeExtraWhitespaces, true),
    escapeWhitespaces: bool(n.escapeWhitespaces, true),
  };
}

/** Reads and parses a `tokenizer.model` file. */
export async function loadSentencePieceModel(file: string): Promise<SentencePieceModel> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(file);
  } catch (err) {
    throw new TokenizerLoadError(`cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  return parseSentencePieceModel(bytes, file);
}
