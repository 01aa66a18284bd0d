// The streaming decoder must print exactly what decode prints, never half a UTF-8 character.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { llamaTokenizer } from './tokenizerSupport.js';

const TEXTS = [
  'Hello world',
  ' leading space and trailing ',
  'emoji 🦙🚀😶‍🌫️ and accents: café naïve',
  '这个存储库包含了对 CarperAI 的 StableVicuna 13B 进行了4位GPTQ格式量化的模型。',
  'កាន់តែពិសេសអាចខលចេញ', // Khmer: mostly byte fallback
  '\n\n  indented\tcode()\n',
  '',
];

test('stream decoder pushes + flush equal decode, token by token', async () => {
  const tok = await llamaTokenizer();
  for (const text of TEXTS) {
    for (const addBos of [false, true]) {
      const ids = tok.encode(text, { addBos });
      for (const skipSpecial of [true, false]) {
        const stream = tok.createStreamDecoder({ skipSpecial });
        let out = '';
        for (const id of ids) {
          const piece = stream.push(id);
          // A replacement character would mean half a character was printed.
          assert.ok(!piece.includes('\uFFFD'), `half a character in ${JSON.stringify(piece)}`);
          out += piece;
        }
        out += stream.flush();
        assert.equal(out, tok.decode(ids, { skipSpecial }), JSON.stringify(text));
      }
      assert.equal(tok.decode(ids), text);
    }
  }
});

test('a multi-byte character split over byte pieces is held back until complete', async () => {
  const tok = await llamaTokenizer();
  const ids = tok.encode('🦙'); // '▁' + <0xF0> <0x9F> <0xA6> <0x99>
  const stream = tok.createStreamDecoder();
  assert.deepEqual(ids.map((id) => stream.push(id)), ['', '', '', '', '🦙']);
  assert.equal(stream.flush(), '');
});

test('an unfinished byte sequence becomes U+FFFD at flush, as in decode', async () => {
  const tok = await llamaTokenizer();
  const ids = tok.encode('🦙').slice(0, 3); // '▁', <0xF0>, <0x9F>
  const stream = tok.createStreamDecoder();
  const out = ids.map((id) => stream.push(id)).join('') + stream.flush();
  assert.equal(out, tok.decode(ids));
  assert.equal(out, '\uFFFD');
});

test('the first token of a stream loses its dummy-prefix space, later ones keep theirs', async () => {
  const tok = await llamaTokenizer();
  const stream = tok.createStreamDecoder();
  const [hello, world] = tok.encode('Hello world');
  assert.equal(stream.push(1), ''); // <s> is skipped and does not count as the start
  assert.equal(stream.push(hello), 'Hello');
  assert.equal(stream.push(world), ' world');
});
