// tokenizer.json (Hugging Face) support: a LLaMA-shaped file built here from tokenizer.model must
// encode like the SentencePiece model, and a hand-written small one checks the other shapes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Tokenizer, TokenizerLoadError } from '../../src/tokenizer/index.js';
import { loadSentencePieceModel, PieceType } from '../../src/tokenizer/sentencepieceModel.js';
import { DATA } from '../support/paths.js';
import { LLAMA_TOKENIZER_MODEL, llamaTokenizer, modelDir } from './tokenizerSupport.js';

/**
 * The shape LlamaTokenizerFast writes: vocab in id order, merges of every way two pieces join into a
 * third, ranked by the joined piece's score (best first), Prepend+Replace normalizer, no
 * pre-tokenizer, and the Replace/ByteFallback/Fuse/Strip decoder.
 */
async function llamaTokenizerJson(): Promise<Record<string, unknown>> {
  const spm = await loadSentencePieceModel(LLAMA_TOKENIZER_MODEL);
  const vocab: Record<string, number> = {};
  spm.pieces.forEach((p, id) => (vocab[p.piece] = id));
  const merges: [string, string, number, number][] = [];
  for (const p of spm.pieces) {
    if (p.type !== PieceType.NORMAL) continue;
    const chars = [...p.piece];
    for (let i = 1; i < chars.length; i++) {
      const left = chars.slice(0, i).join('');
      const right = chars.slice(i).join('');
      if (vocab[left] !== undefined && vocab[right] !== undefined) merges.push([left, right, -p.score, vocab[left]]);
    }
  }
  merges.sort((a, b) => a[2] - b[2] || a[3] - b[3]);
  const special = (id: number, content: string): Record<string, unknown> => ({
    id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
  });
  return {
    version: '1.0',
    added_tokens: [special(0, '<unk>'), special(1, '<s>'), special(2, '</s>')],
    normalizer: {
      type: 'Sequence',
      normalizers: [
        { type: 'Prepend', prepend: '▁' },
        { type: 'Replace', pattern: { String: ' ' }, content: '▁' },
      ],
    },
    pre_tokenizer: null,
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: {
      type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: true, byte_fallback: true, vocab, merges: merges.map(([l, r]) => `${l} ${r}`),
    },
  };
}

test('a LLaMA tokenizer.json encodes and decodes like tokenizer.model', async () => {
  const dir = await modelDir({ 'tokenizer.json': await llamaTokenizerJson(), 'tokenizer_config.json': { bos_token: '<s>', eos_token: '</s>' } }, false);
  const fromJson = await Tokenizer.fromModelDir(dir);
  const fromSpm = await llamaTokenizer();
  assert.equal(fromJson.vocabSize, 32000);
  assert.deepEqual([fromJson.unkId, fromJson.bosId, fromJson.eosId], [0, 1, 2]);
  const vectors = path.join(DATA, 'llama-spm-tokenizer-tests', 'ggml-vocab-llama-spm.gguf.inp');
  const texts = (await readFile(vectors, 'utf8')).split('\n__ggml_vocab_test__\n').slice(0, -1);
  texts.push('### Human: What is the capital of France?\n### Assistant:', '<s>[INST] hi [/INST]');
  for (const text of texts) {
    const ids = fromJson.encode(text, { addBos: true });
    assert.deepEqual(ids, fromSpm.encode(text, { addBos: true }), JSON.stringify(text));
    assert.equal(fromJson.decode(ids), fromSpm.decode(ids));
  }
});

test('a small tokenizer.json with Metaspace, byte fallback and added tokens', async () => {
  const vocab: Record<string, number> = { '<unk>': 0, '<s>': 1, '</s>': 2, '<0x0A>': 3, '<0xC3>': 4, '<0xA9>': 5 };
  for (const p of ['▁', 'a', 'b', 'c', '▁a', '▁ab', 'bc', '▁abc']) vocab[p] = Object.keys(vocab).length;
  const json = {
    added_tokens: [
      { id: 1, content: '<s>', special: true },
      { id: 2, content: '</s>', special: true },
      { id: 14, content: '<|end|>', special: true, lstrip: true, rstrip: false },
    ],
    normalizer: null,
    pre_tokenizer: { type: 'Metaspace', replacement: '▁', add_prefix_space: true },
    decoder: { type: 'Metaspace', replacement: '▁', add_prefix_space: true },
    model: { type: 'BPE', unk_token: '<unk>', fuse_unk: true, byte_fallback: true, vocab, merges: [['▁', 'a'], ['▁a', 'b'], ['b', 'c'], ['▁ab', 'c']] },
  };
  const tok = await Tokenizer.fromModelDir(await modelDir({ 'tokenizer.json': json }, false));
  assert.equal(tok.vocabSize, 15);
  const id = (p: string): number => tok.pieceToId(p) ?? -1;
  assert.deepEqual(tok.encode('abc abc'), [id('▁abc'), id('▁abc')]);
  assert.deepEqual(tok.encode('é\n'), [id('▁'), 4, 5, 3]); // bytes C3 A9, newline
  assert.deepEqual(tok.encode('xy'), [id('▁'), 0]); // unknown characters fused into one <unk>
  assert.deepEqual(tok.encode('abc <|end|>'), [id('▁abc'), 14]); // lstrip eats the space
  assert.equal(tok.decode(tok.encode('abc abc\né', { addBos: true })), 'abc abc\né');
});

test('a byte-level (GPT-2 style) tokenizer.json is rejected with TokenizerLoadError', async () => {
  const json = { model: { type: 'BPE', vocab: { a: 0 }, merges: [] }, pre_tokenizer: { type: 'ByteLevel' }, decoder: { type: 'ByteLevel' } };
  const dir = await modelDir({ 'tokenizer.json': json }, false);
  await assert.rejects(Tokenizer.fromModelDir(dir), (err: unknown) => err instanceof TokenizerLoadError && /ByteLevel/.test(err.message));
});
