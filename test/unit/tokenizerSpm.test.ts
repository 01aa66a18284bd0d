// SentencePiece BPE encoding of LLaMA's tokenizer.model against llama.cpp's test vectors (HF output).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { DATA } from '../support/paths.js';
import { llamaTokenizer } from './tokenizerSupport.js';

const VECTORS = path.join(DATA, 'llama-spm-tokenizer-tests', 'ggml-vocab-llama-spm.gguf');

async function cases(): Promise<{ text: string; ids: number[] }[]> {
  const inputs = (await readFile(`${VECTORS}.inp`, 'utf8')).split('\n__ggml_vocab_test__\n');
  inputs.pop(); // the file ends with a separator
  const outputs = (await readFile(`${VECTORS}.out`, 'utf8')).split('\n');
  return inputs.map((text, i) => ({
    text,
    ids: outputs[i].trim() === '' ? [] : outputs[i].trim().split(/\s+/).map(Number),
  }));
}

test('all 46 llama-spm test vectors encode exactly (no BOS)', async () => {
  const tok = await llamaTokenizer();
  const all = await cases();
  assert.equal(all.length, 46);
  for (const c of all) assert.deepEqual(tok.encode(c.text), c.ids, JSON.stringify(c.text));
});

test('the test vectors decode back to their text', async () => {
  const tok = await llamaTokenizer();
  for (const c of await cases()) assert.equal(tok.decode(c.ids), c.text, JSON.stringify(c.text));
});

test('addBos prepends the BOS id; the default adds none', async () => {
  const tok = await llamaTokenizer();
  assert.deepEqual(tok.encode('Hello world'), [15043, 3186]);
  assert.deepEqual(tok.encode('Hello world', { addBos: true }), [1, 15043, 3186]);
  assert.deepEqual(tok.encode('', { addBos: true }), [1]);
});

test('control pieces written in the text are matched whole, unless parseSpecial is false', async () => {
  const tok = await llamaTokenizer();
  assert.deepEqual(tok.encode('Hi</s>'), [...tok.encode('Hi'), 2]);
  assert.ok(!tok.encode('Hi</s>', { parseSpecial: false }).includes(2));
});

test('characters outside the vocabulary fall back to <0xXX> byte pieces', async () => {
  const tok = await llamaTokenizer();
  const ids = tok.encode('🦙');
  // '▁' then the four UTF-8 bytes F0 9F A6 99.
  assert.deepEqual(ids.slice(1).map((id) => tok.idToPiece(id)), ['<0xF0>', '<0x9F>', '<0xA6>', '<0x99>']);
  assert.equal(tok.decode(ids), '🦙');
});

test('piece lookups and special flags', async () => {
  const tok = await llamaTokenizer();
  assert.equal(tok.pieceToId('▁Hello'), 15043);
  assert.equal(tok.idToPiece(15043), '▁Hello');
  assert.equal(tok.pieceToId('<0x0A>'), 13);
  assert.equal(tok.pieceToId('no such piece'), undefined);
  assert.throws(() => tok.idToPiece(32000), RangeError);
  assert.ok(tok.isSpecial(0) && tok.isSpecial(1) && tok.isSpecial(2));
  assert.equal(tok.padId, undefined);
});

test('decode drops special tokens unless skipSpecial is false, and the leading space only once', async () => {
  const tok = await llamaTokenizer();
  const ids = tok.encode('Hello world', { addBos: true });
  assert.equal(tok.decode(ids), 'Hello world');
  assert.equal(tok.decode(ids, { skipSpecial: false }), '<s> Hello world');
  assert.equal(tok.decode(tok.encode(' leading space')), ' leading space');
  assert.equal(tok.decode([...ids, 2, ...tok.encode('again')]), 'Hello world again');
});

test('long text encodes in one pass like short pieces of it', async () => {
  const tok = await llamaTokenizer();
  const line = 'The quick brown fox, naïve café 🦙 日本語 1234.\n';
  const ids = tok.encode(line.repeat(2000));
  assert.equal(tok.decode(ids), line.repeat(2000));
  assert.ok(ids.length > 2000 * 10);
});
