import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Sampler, argmax, InvalidSamplingOptionsError, type SamplingOptions } from '../../src/generate/sampler.js';
import { applyPenalties } from '../../src/generate/penalties.js';
import { Prng } from '../../src/generate/prng.js';

/** Logits whose softmax is exactly `probs` (up to a constant). */
function logitsOf(probs: number[]): Float32Array {
  return Float32Array.from(probs, (p) => Math.log(p));
}

function draw(options: Partial<SamplingOptions>, logits: Float32Array, n: number, history: number[] = []): number[] {
  const s = new Sampler(logits.length, options);
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(s.sample(logits, history));
  return out;
}

function histogram(ids: number[], vocab: number): number[] {
  const h = new Array<number>(vocab).fill(0);
  for (const id of ids) h[id]++;
  return h;
}

function randomLogits(prng: Prng, vocab: number): Float32Array {
  return Float32Array.from({ length: vocab }, () => (prng.nextFloat() - 0.5) * 8);
}

test('greedy picks the argmax, lowest id on ties, ignoring the PRNG', () => {
  const logits = Float32Array.from([0.1, 2, -1, 2, 1.9]);
  assert.deepEqual(draw({ temperature: 0, seed: 1 }, logits, 5), [1, 1, 1, 1, 1]);
  assert.equal(argmax(Float32Array.from([3, 3, 3])), 0);
  assert.equal(argmax(Float32Array.from([-Infinity, -5, -Infinity])), 1);
});

test('the same seed gives the same tokens; another seed does not', () => {
  const prng = new Prng(7);
  const logits = randomLogits(prng, 50);
  const opts = { temperature: 1.3, topP: 0.95, topK: 40, seed: 1234 };
  const a = draw(opts, logits, 300);
  const b = draw(opts, logits, 300);
  const c = draw({ ...opts, seed: 1235 }, logits, 300);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  assert.equal(new Sampler(50, { seed: 99 }).seed, 99);
});

test('PRNG floats are in [0, 1) and reproducible', () => {
  const a = new Prng(0);
  const b = new Prng(0);
  for (let i = 0; i < 1000; i++) {
    const x = a.nextFloat();
    assert.ok(x >= 0 && x < 1);
    assert.equal(x, b.nextFloat());
  }
});

test('top-k = 1 equals greedy on random logits (ties included)', () => {
  const prng = new Prng(3);
  for (let trial = 0; trial < 50; trial++) {
    const logits = randomLogits(prng, 97);
    if (trial % 5 === 0) logits[10] = logits[60] = 100; // a tie at the top
    const greedy = draw({ temperature: 0 }, logits, 1)[0];
    assert.deepEqual(draw({ temperature: 1.5, topK: 1, seed: trial }, logits, 5), new Array(5).fill(greedy));
  }
});

test('top-k keeps exactly the k most likely tokens', () => {
  const logits = logitsOf([0.05, 0.3, 0.1, 0.25, 0.3]);
  const seen = new Set(draw({ topK: 3, seed: 5 }, logits, 3000));
  assert.deepEqual([...seen].sort(), [1, 3, 4]);
});

test('top-p keeps the smallest set reaching p, the crossing token included', () => {
  const logits = logitsOf([0.5, 0.3, 0.15, 0.05]);
  assert.deepEqual([...new Set(draw({ topP: 0.45, seed: 1 }, logits, 2000))], [0]);
  assert.deepEqual([...new Set(draw({ topP: 0.75, seed: 1 }, logits, 3000))].sort(), [0, 1]);
  assert.deepEqual([...new Set(draw({ topP: 0.9, seed: 1 }, logits, 4000))].sort(), [0, 1, 2]);
});

test('min-p drops tokens below min_p × the top probability', () => {
  const logits = logitsOf([0.5, 0.3, 0.15, 0.05]);
  assert.deepEqual([...new Set(draw({ minP: 0.35, seed: 2 }, logits, 3000))].sort(), [0, 1]); // threshold 0.175
  assert.deepEqual([...new Set(draw({ minP: 0.2, seed: 2 }, logits, 4000))].sort(), [0, 1, 2]); // threshold 0.1
  assert.deepEqual([...new Set(draw({ minP: 0.9, seed: 2 }, logits, 500))], [0]);
});

test('typical-p keeps the tokens closest to the entropy, even without the most likely one', () => {
  // H = 1.748 nats; -ln 0.4 = 0.92 is farther from H than -ln 0.1 = 2.30, so token 0 is atypical.
  const logits = logitsOf([0.4, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]);
  assert.deepEqual([...new Set(draw({ typicalP: 0.55, seed: 3 }, logits, 4000))].sort(), [1, 2, 3, 4, 5, 6]);
  assert.deepEqual([...new Set(draw({ typicalP: 0.25, seed: 3 }, logits, 3000))].sort(), [1, 2, 3]);
  // the first (most typical) token alone reaches p when p is tiny
  assert.deepEqual([...new Set(draw({ typicalP: 0.01, seed: 3 }, logits, 200))], [1]);
});

test('filters chain in order: top-k, then top-p on the renormalized rest', () => {
  // after top-k 2: [0.5, 0.3] renormalized to [0.625, 0.375]; top-p 0.6 then keeps only token 0
  const logits = logitsOf([0.5, 0.3, 0.15, 0.05]);
  assert.deepEqual([...new Set(draw({ topK: 2, topP: 0.6, seed: 4 }, logits, 1000))], [0]);
  // without top-k, top-p 0.6 keeps tokens 0 and 1 (0.5 < 0.6)
  assert.deepEqual([...new Set(draw({ topP: 0.6, seed: 4 }, logits, 3000))].sort(), [0, 1]);
});

test('temperature → 0 converges to greedy', () => {
  const prng = new Prng(11);
  for (let trial = 0; trial < 20; trial++) {
    const logits = randomLogits(prng, 64);
    const greedy = draw({ temperature: 0 }, logits, 1)[0];
    assert.deepEqual(draw({ temperature: 1e-4, seed: trial }, logits, 20), new Array(20).fill(greedy));
  }
  // and a high temperature flattens: all 4 tokens appear
  assert.equal(new Set(draw({ temperature: 100, seed: 1 }, logitsOf([0.97, 0.01, 0.01, 0.01]), 400)).size, 4);
});

test('penalties on hand-checkable logits', () => {
  const base = [2, -1, 0.5, 3, 1];
  const run = (history: number[], o: Partial<{ repetitionPenalty: number; presencePenalty: number; frequencyPenalty: number; repeatLastN: number }>): number[] => {
    const logits = Float32Array.from(base);
    const counts = new Uint32Array(base.length);
    applyPenalties(logits, history, { repetitionPenalty: 1, presencePenalty: 0, frequencyPenalty: 0, repeatLastN: -1, ...o }, counts);
    assert.ok(counts.every((c) => c === 0), 'scratch counts left zero');
    return [...logits];
  };
  // repetition 2: positive divided, negative multiplied, once per distinct id however often it occurs
  assert.deepEqual(run([0, 1, 0, 3, 3, 3], { repetitionPenalty: 2 }), [1, -2, 0.5, 1.5, 1]);
  // OpenAI: logit − count × frequency − presence
  assert.deepEqual(run([0, 0, 3], { frequencyPenalty: 0.5, presencePenalty: 0.25 }), [2 - 1 - 0.25, -1, 0.5, 3 - 0.5 - 0.25, 1]);
  // both: repetition first, then subtraction
  assert.deepEqual(run([3, 3], { repetitionPenalty: 1.5, frequencyPenalty: 0.25 }), [2, -1, 0.5, 2 - 0.5, 1]);
  // window: only the last 2 ids count
  assert.deepEqual(run([0, 1, 3], { repetitionPenalty: 2, repeatLastN: 2 }), [2, -2, 0.5, 1.5, 1]);
  // 0 = off; out-of-range ids are ignored
  assert.deepEqual(run([0, 1, 3], { repetitionPenalty: 2, repeatLastN: 0 }), base);
  assert.deepEqual(run([-1, 99], { repetitionPenalty: 2 }), base);
});

test('penalties change the greedy pick', () => {
  const logits = Float32Array.from([2, 1.5, 0]);
  assert.equal(draw({ temperature: 0 }, logits, 1, [0])[0], 0);
  assert.equal(draw({ temperature: 0, repetitionPenalty: 1.5 }, logits, 1, [0])[0], 1); // 2 / 1.5 = 1.33 < 1.5
  assert.equal(draw({ temperature: 0, presencePenalty: 1 }, logits, 1, [0, 0, 0])[0], 1);
  // the caller's logits are not modified
  assert.deepEqual([...logits], [2, 1.5, 0]);
});

/** Pearson chi-square of observed counts against softmax(logits / T). */
function chiSquare(counts: number[], logits: number[], temperature: number): number {
  const total = counts.reduce((a, b) => a + b, 0);
  const w = logits.map((l) => Math.exp(l / temperature));
  const z = w.reduce((a, b) => a + b, 0);
  return counts.reduce((acc, c, i) => {
    const e = (total * w[i]) / z;
    return acc + ((c - e) * (c - e)) / e;
  }, 0);
}

test('sampled frequencies match the softmax (chi-square, fixed seeds)', () => {
  const base = [1, 0.5, 0, -0.5, 2];
  // df = 4: the 99.9th percentile is 18.47. Both draw paths: plain softmax and the candidate list
  // (min-p 1e-9 forces the sorted path without removing anything).
  for (const [opts, T] of [
    [{ seed: 10 }, 1],
    [{ seed: 11, temperature: 0.7 }, 0.7],
    [{ seed: 12, minP: 1e-9 }, 1],
    [{ seed: 13, temperature: 1.8, topP: 1, typicalP: 1, minP: 1e-9 }, 1.8],
  ] as const) {
    const ids = draw(opts, Float32Array.from(base), 20000);
    const chi = chiSquare(histogram(ids, base.length), base, T);
    assert.ok(chi < 18.47, `chi-square ${chi.toFixed(2)} for ${JSON.stringify(opts)}`);
  }
});

test('top-k sampling follows the renormalized softmax of the kept tokens', () => {
  const base = [1, 0.5, 0, -0.5, 2, -3, -2];
  const ids = draw({ seed: 21, topK: 3 }, Float32Array.from(base), 20000);
  const h = histogram(ids, base.length);
  assert.deepEqual([h[2], h[3], h[5], h[6]], [0, 0, 0, 0]);
  const chi = chiSquare([h[0], h[1], h[4]], [base[0], base[1], base[4]], 1);
  assert.ok(chi < 13.82, `chi-square ${chi.toFixed(2)} (df 2, 99.9%: 13.82)`);
});

test('invalid options are named errors', () => {
  assert.throws(() => new Sampler(10, { temperature: -1 }), InvalidSamplingOptionsError);
  assert.throws(() => new Sampler(10, { topP: 0 }), /topP/);
  assert.throws(() => new Sampler(10, { topK: 1.5 }), /topK/);
  assert.throws(() => new Sampler(10, { seed: -3 }), /seed/);
  assert.throws(() => new Sampler(10, { typicalP: 2 }), /typicalP/);
  assert.throws(() => new Sampler(4).sample(new Float32Array(5), []), RangeError);
});

test('the top-p / min-p prefilter changes nothing: same draws as the full sort', () => {
  // top-k = V−1 takes the path that sorts everything (the one dropped token is far outside the nucleus)
  const prng = new Prng(5);
  const V = 3000;
  for (let trial = 0; trial < 12; trial++) {
    const logits = randomLogits(prng, V);
    logits[trial] = -1e9; // the token top-k drops
    const opts = [{ topP: 0.9 }, { topP: 0.5, temperature: 0.6 }, { minP: 0.05 }, { topP: 0.97, minP: 0.01, temperature: 1.4 }][trial % 4];
    const fast = draw({ ...opts, seed: trial }, logits, 300);
    const full = draw({ ...opts, seed: trial, topK: V - 1 }, logits, 300);
    assert.deepEqual(fast, full, JSON.stringify(opts));
  }
});
