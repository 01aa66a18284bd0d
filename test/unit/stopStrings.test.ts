import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StopStringMatcher } from '../../src/generate/stopStrings.js';

/** Feed `pieces` one by one; return what was emitted, what stopped it, and the flushed tail. */
function feed(stops: string[], pieces: string[]): { emitted: string; stop: string | null; chunks: string[] } {
  const m = new StopStringMatcher(stops);
  const chunks: string[] = [];
  let stop: string | null = null;
  for (const p of pieces) {
    const r = m.push(p);
    chunks.push(r.text);
    if (r.stop !== null) {
      stop = r.stop;
      break;
    }
  }
  if (stop === null) chunks.push(m.flush());
  return { emitted: chunks.join(''), stop, chunks };
}

/** Every way to cut `s` into non-empty pieces (2^(n-1) of them). */
function* splits(s: string): Generator<string[]> {
  const n = s.length;
  for (let mask = 0; mask < 1 << (n - 1); mask++) {
    const pieces: string[] = [];
    let start = 0;
    for (let i = 1; i < n; i++) {
      if (mask & (1 << (i - 1))) {
        pieces.push(s.slice(start, i));
        start = i;
      }
    }
    pieces.push(s.slice(start));
    yield pieces;
  }
}

test('"### Human:" ends a StableVicuna reply however the tokens split it, and is never emitted', () => {
  const reply = 'Paris.\n### Human: and?';
  assert.deepEqual(feed(['### Human:'], ['Paris', '.', '\n', '###', ' Human', ':', ' and?']), {
    emitted: 'Paris.\n',
    stop: '### Human:',
    chunks: ['Paris', '.', '\n', '', '', ''],
  });
  let count = 0;
  for (const pieces of splits(reply)) {
    const r = feed(['### Human:'], pieces);
    assert.equal(r.emitted, 'Paris.\n', JSON.stringify(pieces));
    assert.equal(r.stop, '### Human:');
    for (const c of r.chunks) assert.ok(!c.includes('#'), `leaked ${JSON.stringify(c)} for ${JSON.stringify(pieces)}`);
    count++;
  }
  assert.equal(count, 2 ** (reply.length - 1));
});

test('held text is released as soon as it stops matching', () => {
  const r = feed(['### Human:'], ['a', '##', '#', ' H', 'x', 'y']);
  assert.deepEqual(r.chunks, ['a', '', '', '', '### Hx', 'y', '']);
  assert.equal(r.stop, null);
  // a partial prefix inside a longer run: "## ### Human:" keeps "## " and stops at the second ###
  assert.deepEqual(feed(['### Human:'], ['## #', '## Hu', 'man:']), { emitted: '## ', stop: '### Human:', chunks: ['## ', '', ''] });
});

test('text that ends while a prefix is held is flushed at the end', () => {
  const r = feed(['### Human:'], ['done ', '###']);
  assert.equal(r.emitted, 'done ###');
  assert.equal(r.stop, null);
  assert.deepEqual(r.chunks, ['done ', '', '###']);
});

test('several stop strings: the earliest match wins, shared prefixes are handled', () => {
  const stops = ['### Human:', '### Instruction:', 'USER:'];
  for (const pieces of splits('ok### Instruction: x')) {
    const r = feed(stops, pieces);
    assert.equal(r.emitted, 'ok');
    assert.equal(r.stop, '### Instruction:');
  }
  assert.deepEqual(feed(stops, ['aUSER: ### Human:']).stop, 'USER:');
  assert.deepEqual(feed(stops, ['a### Human: USER:']).stop, '### Human:');
  // one stop string is a prefix of another: the shorter completes first
  assert.deepEqual(feed(['ab', 'abc'], ['xa', 'bc']), { emitted: 'x', stop: 'ab', chunks: ['x', ''] });
});

test('no stop strings (or only empty ones) pass text straight through', () => {
  assert.deepEqual(feed([], ['a', 'b']).chunks, ['a', 'b', '']);
  assert.deepEqual(feed([''], ['a', 'b']).chunks, ['a', 'b', '']);
});

test('after a match nothing more is emitted', () => {
  const m = new StopStringMatcher(['STOP']);
  assert.deepEqual(m.push('xSTOPy'), { text: 'x', stop: 'STOP' });
  assert.deepEqual(m.push('more'), { text: '', stop: 'STOP' });
  assert.equal(m.flush(), '');
  assert.equal(m.matched, 'STOP');
});

test('non-ASCII text and a stop string split inside it', () => {
  for (const pieces of splits('é😀 ¿Fin?')) {
    const r = feed(['¿Fin?'], pieces);
    assert.equal(r.emitted, 'é😀 ');
  }
});
