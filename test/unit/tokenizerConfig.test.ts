// Loading: corrupt files give TokenizerLoadError; config files add tokens and name the special ids.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { QllamaError } from '../../src/errors.js';
import { Tokenizer, TokenizerLoadError } from '../../src/tokenizer/index.js';
import { DATA } from '../support/paths.js';
import { LLAMA_TOKENIZER_MODEL, modelDir } from './tokenizerSupport.js';

async function assertLoadError(dir: string, pattern: RegExp): Promise<void> {
  await assert.rejects(Tokenizer.fromModelDir(dir), (err: unknown) => {
    assert.ok(err instanceof TokenizerLoadError && err instanceof QllamaError);
    assert.equal(err.name, 'TokenizerLoadError');
    assert.match(err.message, pattern);
    return true;
  });
}

test('a truncated, empty, garbage or LFS-pointer tokenizer.model gives TokenizerLoadError naming the file', async () => {
  const bytes = await readFile(LLAMA_TOKENIZER_MODEL);
  const lfsPointer = await readFile(path.join(DATA, 'vicuna-13b-gptq-4bit-128g-sidecar', 'tokenizer.model.lfs-pointer.txt'));
  const garbage = Uint8Array.from({ length: 4096 }, (_, i) => (i * 2654435761) >>> 24);
  for (const broken of [bytes.subarray(0, bytes.length >> 1), bytes.subarray(0, 1000), new Uint8Array(0), lfsPointer, garbage]) {
    const dir = await modelDir({ 'tokenizer.model': broken }, false);
    await assertLoadError(dir, /tokenizer\.model.*(corrupted or incomplete|cannot)/s);
  }
});

test('a folder without tokenizer files, or with broken JSON config, gives TokenizerLoadError', async () => {
  await assertLoadError(await modelDir({ 'config.json': {} }, false), /neither tokenizer\.model nor tokenizer\.json/);
  await assertLoadError(await modelDir({ 'tokenizer_config.json': '{"bos_token": ' }), /tokenizer_config\.json is not valid JSON/);
});

test('[PAD] from tokenizer_config added_tokens_decoder is id 32000 and one token in text', async () => {
  const dir = await modelDir({
    'tokenizer_config.json': {
      bos_token: '<s>',
      eos_token: '</s>',
      unk_token: '<unk>',
      pad_token: '[PAD]',
      added_tokens_decoder: {
        '32000': { content: '[PAD]', lstrip: false, normalized: false, rstrip: false, single_word: false, special: true },
      },
    },
  });
  const tok = await Tokenizer.fromModelDir(dir);
  assert.equal(tok.vocabSize, 32001);
  assert.equal(tok.padId, 32000);
  assert.equal(tok.pieceToId('[PAD]'), 32000);
  assert.equal(tok.idToPiece(32000), '[PAD]');
  assert.ok(tok.isSpecial(32000));
  const ids = tok.encode('Hello[PAD]world');
  assert.deepEqual(ids, [...tok.encode('Hello'), 32000, ...tok.encode('world')]);
  assert.equal(tok.decode(ids), 'Hello world'); // the text after [PAD] got its own dummy prefix, as in HF
  assert.equal(tok.decode(ids, { skipSpecial: false }), 'Hello[PAD] world');
});

test("StableVicuna's side files: [PAD] named only in special_tokens_map gets 32000; BOS stays config.json's", async () => {
  const sidecar = path.join(DATA, 'vicuna-13b-gptq-4bit-128g-sidecar');
  const files: Record<string, unknown> = {};
  for (const f of ['config.json', 'special_tokens_map.json', 'tokenizer_config.json']) {
    files[f] = await readFile(path.join(sidecar, f), 'utf8');
  }
  const tok = await Tokenizer.fromModelDir(await modelDir(files));
  assert.equal(tok.vocabSize, 32001);
  assert.equal(tok.padId, 32000);
  // special_tokens_map.json says bos "</s>", unk "</s>" (a known slip of that conversion).
  assert.deepEqual([tok.bosId, tok.eosId, tok.unkId], [1, 2, 0]);
});

test('added_tokens.json adds non-special tokens that decode as written', async () => {
  const tok = await Tokenizer.fromModelDir(await modelDir({ 'added_tokens.json': { '<|im_end|>': 32000, '<|im_start|>': 32001 } }));
  assert.equal(tok.vocabSize, 32002);
  const ids = tok.encode('<|im_start|>user\nHi<|im_end|>');
  assert.equal(ids[0], 32001);
  assert.equal(ids[ids.length - 1], 32000);
  assert.ok(!tok.isSpecial(32000));
  assert.equal(tok.decode(ids), '<|im_start|> user\nHi<|im_end|>');
});

test('config.json ids name BOS/EOS; pad_token_id gives padId', async () => {
  const tok = await Tokenizer.fromModelDir(await modelDir({ 'config.json': { bos_token_id: 1, eos_token_id: [2], pad_token_id: 0 } }));
  assert.deepEqual([tok.bosId, tok.eosId, tok.padId], [1, 2, 0]);
});
