import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CalibrationDataError, sampleCalibration, type CalibrationSource } from '../../src/quantize/calibration.js';
import { PythonRandom } from '../../src/quantize/pythonRandom.js';

// Values printed by CPython 3 (`random.seed(s); [random.randint(a, b) ...]`, then getrandbits(32)).
test('PythonRandom replays CPython random.seed / randint / getrandbits', () => {
  const r = new PythonRandom(0);
  assert.deepEqual(Array.from({ length: 5 }, () => r.randint(0, 999)), [864, 394, 776, 911, 430]);
  assert.equal(r.getrandbits(32), 173879092);
  const r2 = new PythonRandom(12345);
  assert.deepEqual(Array.from({ length: 3 }, () => r2.randint(0, 1 << 20)), [873715, 21326, 626293]);
  assert.throws(() => r2.randint(0, -1), RangeError);
});

/** One id per character, BOS = 1 first, like a SentencePiece encode with add_bos. */
const charTokenizer = {
  encode(text: string, o: { addBos: boolean }): number[] {
    return [...(o.addBos ? [1] : []), ...[...text].map((c) => c.charCodeAt(0))];
  },
};

test('text sources draw windows at randint(0, N − seqlen − 1) as get_wikitext2 does', () => {
  const text = Array.from({ length: 1009 }, (_, i) => String.fromCharCode(0x100 + i)).join(''); // N = 1010 ids
  const src: CalibrationSource = { kind: 'text', text, path: 'mem' };
  const windows = sampleCalibration(src, charTokenizer, { nsamples: 2, seqlen: 10, seed: 0 });
  const ids = charTokenizer.encode(text, { addBos: true });
  assert.deepEqual([...windows[0]], ids.slice(864, 874));
  assert.deepEqual([...windows[1]], ids.slice(394, 404));
});

test('document sources skip documents not longer than the window and are seeded', () => {
  const docs = ['short', 'x'.repeat(40), 'tiny', 'y'.repeat(50)];
  const src: CalibrationSource = { kind: 'documents', docs, path: 'mem' };
  const a = sampleCalibration(src, charTokenizer, { nsamples: 4, seqlen: 20, seed: 3 });
  const b = sampleCalibration(src, charTokenizer, { nsamples: 4, seqlen: 20, seed: 3 });
  assert.deepEqual(a, b);
  for (const w of a) {
    assert.equal(w.length, 20);
    assert.ok(w.every((id) => id === 1 || id === 120 || id === 121) && new Set(w).size <= 2, 'one long document per window');
  }
});

test('too little data is a CalibrationDataError that says what to change', () => {
  const docs: CalibrationSource = { kind: 'documents', docs: ['abc', 'defg'], path: 'docs.jsonl' };
  assert.throws(() => sampleCalibration(docs, charTokenizer, { nsamples: 2, seqlen: 8, seed: 0 }), (e: unknown) => e instanceof CalibrationDataError && /--seqlen/.test(e.message));
  const text: CalibrationSource = { kind: 'text', text: 'a'.repeat(100), path: 'wiki.txt' };
  assert.throws(() => sampleCalibration(text, charTokenizer, { nsamples: 20, seqlen: 8, seed: 0 }), (e: unknown) => e instanceof CalibrationDataError && /too short/.test(e.message));
  const oneDoc: CalibrationSource = { kind: 'documents', docs: ['z'.repeat(30)], path: 'one.jsonl' };
  assert.throws(() => sampleCalibration(oneDoc, charTokenizer, { nsamples: 8, seqlen: 16, seed: 0 }), CalibrationDataError);
});
