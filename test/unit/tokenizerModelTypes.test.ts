// Small hand-made tokenizer.model files: user-defined and unused pieces in BPE, the UNIGRAM model,
// and normalizer options LLaMA does not use.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import protobuf from 'protobufjs';
import { Tokenizer } from '../../src/tokenizer/index.js';
import { PieceType } from '../../src/tokenizer/sentencepieceModel.js';
import { modelDir } from './tokenizerSupport.js';

interface PieceSpec {
  piece: string;
  score?: number;
  type?: PieceType;
}

/** Writes a ModelProto by hand (field numbers of sentencepiece_model.proto). */
function modelProto(pieces: PieceSpec[], opts: { modelType: number; removeExtraWhitespaces?: boolean }): Uint8Array {
  const w = protobuf.Writer.create();
  for (const p of pieces) {
    w.uint32((1 << 3) | 2).fork();
    w.uint32((1 << 3) | 2).string(p.piece);
    w.uint32((2 << 3) | 5).float(p.score ?? 0);
    w.uint32((3 << 3) | 0).int32(p.type ?? PieceType.NORMAL);
    w.ldelim();
  }
  // trainer_spec: model_type, byte_fallback
  w.uint32((2 << 3) | 2).fork().uint32((3 << 3) | 0).int32(opts.modelType).uint32((35 << 3) | 0).bool(true).ldelim();
  // normalizer_spec: name, add_dummy_prefix, remove_extra_whitespaces
  w.uint32((3 << 3) | 2).fork();
  w.uint32((1 << 3) | 2).string('identity');
  w.uint32((3 << 3) | 0).bool(true);
  w.uint32((4 << 3) | 0).bool(opts.removeExtraWhitespaces ?? false);
  w.ldelim();
  return w.finish();
}

const BASE: PieceSpec[] = [
  { piece: '<unk>', type: PieceType.UNKNOWN },
  { piece: '<s>', type: PieceType.CONTROL },
  { piece: '</s>', type: PieceType.CONTROL },
  ...Array.from({ length: 256 }, (_, b) => ({ piece: `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`, type: PieceType.BYTE })),
];

async function tokenizer(pieces: PieceSpec[], opts: { modelType: number; removeExtraWhitespaces?: boolean }): Promise<Tokenizer> {
  return Tokenizer.fromModelDir(await modelDir({ 'tokenizer.model': modelProto([...BASE, ...pieces], opts) }, false));
}

test('BPE: user-defined pieces are matched whole and never merged; UNUSED merges are undone', async () => {
  const tok = await tokenizer(
    [
      { piece: '▁', score: -1 },
      { piece: 'a', score: -1 },
      { piece: 'b', score: -1 },
      { piece: '▁a', score: -2 },
      { piece: 'ab', score: -3 },
      { piece: 'ba', score: -0.5, type: PieceType.UNUSED },
      { piece: '<sep>', type: PieceType.USER_DEFINED },
      { piece: 'b<', score: -0.1 },
    ],
    { modelType: 2 },
  );
  const id = (p: string): number => tok.pieceToId(p) ?? -1;
  // 'b<' would merge if '<sep>' were not one frozen symbol.
  assert.deepEqual(tok.encode('ab<sep>'), [id('▁a'), id('b'), id('<sep>')]);
  // 'ba' (UNUSED, best score) merges first, then goes back to 'b' + 'a'.
  assert.deepEqual(tok.encode('ba'), [id('▁'), id('b'), id('a')]);
  assert.equal(tok.decode(tok.encode('ab<sep>ba')), 'ab<sep>ba');
});

test('UNIGRAM: the best-scoring segmentation, byte fallback for unknown characters', async () => {
  const tok = await tokenizer(
    [
      { piece: '▁', score: -3 },
      { piece: 'h', score: -4 },
      { piece: 'e', score: -4 },
      { piece: 'l', score: -4 },
      { piece: 'o', score: -4 },
      { piece: '▁he', score: -5 },
      { piece: 'llo', score: -5 },
      { piece: '▁hello', score: -11 },
      { piece: 'hel', score: -2 },
    ],
    { modelType: 1 },
  );
  const id = (p: string): number => tok.pieceToId(p) ?? -1;
  // ▁he + llo (-10) beats ▁hello (-11) and ▁ + hel + l + o (-13).
  assert.deepEqual(tok.encode('hello'), [id('▁he'), id('llo')]);
  assert.deepEqual(tok.encode('hé'), [id('▁'), id('h'), id('<0xC3>'), id('<0xA9>')]);
  assert.equal(tok.decode(tok.encode('hello hé')), 'hello hé');
});

test('remove_extra_whitespaces collapses and trims spaces when the model asks for it', async () => {
  const tok = await tokenizer([{ piece: '▁', score: -1 }, { piece: 'a', score: -1 }, { piece: '▁a', score: -0.5 }], {
    modelType: 2,
    removeExtraWhitespaces: true,
  });
  assert.deepEqual(tok.encode('  a   a '), tok.encode('a a'));
  assert.deepEqual(tok.encode('   '), []);
});
