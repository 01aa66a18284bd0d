/**
 * The device sampling path without a GPU: which options the Sampler hands to a device
 * (deviceSampling), that its uniforms follow the PRNG exactly as host draws would, and that
 * generate() picks the device path when the model offers forwardSample, falls back to the host
 * when the device cannot decide, and gives the same ids for a seed either way. The fake device
 * draws with the plain double-precision reference (test/support/sampleReference.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { DeviceSampling } from '../../src/backends/backend.js';
import { generateAll } from '../../src/generate/generator.js';
import { Prng } from '../../src/generate/prng.js';
import { Sampler, type SamplingOptions } from '../../src/generate/sampler.js';
import type { TextCodec } from '../../src/generate/textCodec.js';
import type { CausalLm } from '../../src/model/causalLm.js';
import { referenceDraw } from '../support/sampleReference.js';

const VOCAB = 300;

function randomLogits(prng: Prng, vocab: number, scale: number): Float32Array {
  return Float32Array.from({ length: vocab }, () => (prng.nextFloat() - 0.5) * scale);
}

test('deviceSampling: which options run on the device, with top-k off at or past the vocabulary', () => {
  const on = (o: Partial<SamplingOptions>): DeviceSampling | null => new Sampler(VOCAB, { seed: 1, ...o }).deviceSampling();
  assert.equal(on({ temperature: 0 }), null); // greedy: the device argmax
  assert.equal(on({ typicalP: 0.9 }), null);
  assert.equal(on({ repetitionPenalty: 1.1 }), null);
  assert.equal(on({ presencePenalty: 0.5 }), null);
  assert.equal(on({ frequencyPenalty: 0.5 }), null);
  assert.notEqual(on({ repetitionPenalty: 1.1, repeatLastN: 0 }), null); // an empty window: no penalty
  const p = on({ temperature: 0.7, topK: 40, topP: 0.9, minP: 0.05 });
  assert.ok(p);
  assert.deepEqual({ ...p, u: 0 }, { temperature: 0.7, topK: 40, topP: 0.9, minP: 0.05, u: 0 });
  assert.ok(p.u >= 0 && p.u < 1);
  assert.equal(on({ topK: VOCAB })?.topK, 0);
  assert.equal(on({ topK: VOCAB + 5 })?.topK, 0);
  assert.equal(on({ topK: VOCAB - 1 })?.topK, VOCAB - 1);
  assert.deepEqual({ ...on({}), u: 0 }, { temperature: 1, topK: 0, topP: 1, minP: 0, u: 0 });
});

test('deviceSampling hands out the PRNG stream: one uniform per draw, held until a draw takes it', () => {
  const s = new Sampler(VOCAB, { seed: 77, topP: 0.9 });
  const prng = new Prng(77);
  for (let i = 0; i < 50; i++) {
    const u = s.deviceSampling()?.u;
    assert.equal(s.deviceSampling()?.u, u, 'no draw in between: the same uniform');
    assert.equal(u, prng.nextFloat());
    s.acceptDeviceDraw();
  }
});

test('a host fallback draws with the uniform the device was given: same ids as plain host sampling', () => {
  const prng = new Prng(9);
  const settings: Partial<SamplingOptions>[] = [
    { temperature: 1 }, { temperature: 0.7, topK: 40 }, { temperature: 1.3, topP: 0.9 }, { topP: 0.5, minP: 0.05 }, { topK: 1, topP: 0.9 },
  ];
  for (const o of settings) {
    const viaDevice = new Sampler(VOCAB, { ...o, seed: 5 });
    const host = new Sampler(VOCAB, { ...o, seed: 5 });
    for (let i = 0; i < 60; i++) {
      const logits = randomLogits(prng, VOCAB, 12);
      if (i % 7 === 3) logits.fill(-Infinity); // the host draws nothing here: the uniform waits
      const p = viaDevice.deviceSampling();
      assert.ok(p);
      const want = host.sample(logits, []);
      const device = referenceDraw(logits, p);
      if (device === null || i % 2 === 0) {
        assert.equal(viaDevice.sample(logits, []), want, `${JSON.stringify(o)} step ${i}: host fallback`);
      } else {
        assert.equal(device, want, `${JSON.stringify(o)} step ${i}: device draw`);
        viaDevice.acceptDeviceDraw();
      }
    }
  }
});

const codec: TextCodec = {
  bosId: 1,
  eosId: 2,
  encode: (text) => [1, ...[...text].map((c) => 3 + (c.charCodeAt(0) % (VOCAB - 3)))],
  decode: (ids) => ids.map((id) => String.fromCharCode(32 + (id % 90))).join(''),
  createStreamDecoder: () => ({ push: (id: number) => String.fromCharCode(32 + (id % 90)), flush: () => '' }),
};

/**
 * Logits that depend on the fed history, so a different pick changes everything after it. With
 * `device`, forwardSample draws with the reference, handing back the logits instead every
 * `fallbackEvery`-th call (as a backend does when it cannot decide).
 */
class FakeModel implements CausalLm {
  readonly vocabSize = VOCAB;
  readonly contextLength = 256;
  readonly calls = { forward: 0, forwardSample: 0, deviceIds: 0, argmax: 0 };
  private readonly seen: number[] = [];
  forwardSample?: (tokens: readonly number[], startPos: number, p: DeviceSampling) => Promise<number | Float32Array>;
  forwardArgmax?: (tokens: readonly number[], startPos: number) => Promise<number>;

  constructor(device: boolean, fallbackEvery = 0) {
    if (device) {
      this.forwardSample = async (tokens, startPos, p) => {
        this.calls.forwardSample++;
        const logits = this.logits(tokens, startPos);
        const id = fallbackEvery > 0 && this.calls.forwardSample % fallbackEvery === 0 ? null : referenceDraw(logits, p);
        if (id === null) return logits;
        this.calls.deviceIds++;
        return id;
      };
      this.forwardArgmax = async (tokens, startPos) => {
        this.calls.argmax++;
        const logits = this.logits(tokens, startPos);
        return logits.indexOf(Math.max(...logits));
      };
    }
  }

  async forward(tokens: readonly number[], startPos: number): Promise<Float32Array> {
    this.calls.forward++;
    return this.logits(tokens, startPos);
  }

  private logits(tokens: readonly number[], startPos: number): Float32Array {
    this.seen.length = startPos;
    this.seen.push(...tokens);
    let h = 0;
    for (const t of this.seen) h = (Math.imul(h, 31) + t) | 0;
    return randomLogits(new Prng(h >>> 0), VOCAB, 16);
  }
}

test('generate samples on the device when the model can, with the same ids as on the host', async () => {
  const settings: Partial<SamplingOptions>[] = [
    { temperature: 1 }, { temperature: 0.7, topK: 40 }, { temperature: 1.3, topP: 0.9 }, { topP: 0.5, minP: 0.05 }, { topK: 5, minP: 0.05 },
  ];
  for (const sampling of settings) {
    for (const seed of [1, 2, 3]) {
      const req = { promptIds: codec.encode('hello'), maxNewTokens: 40, stopAtEos: false, sampling: { ...sampling, seed } };
      const host = new FakeModel(false);
      const device = new FakeModel(true);
      const mixed = new FakeModel(true, 3);
      const want = await generateAll(host, codec, req);
      const viaDevice = await generateAll(device, codec, req);
      const viaMixed = await generateAll(mixed, codec, req);
      const name = `${JSON.stringify(sampling)} seed ${seed}`;
      assert.deepEqual(viaDevice.tokenIds, want.tokenIds, name);
      assert.deepEqual(viaMixed.tokenIds, want.tokenIds, `${name}, every third draw on the host`);
      assert.equal(host.calls.forward, 40);
      assert.deepEqual(device.calls, { forward: 0, forwardSample: 40, deviceIds: 40, argmax: 0 }, name);
      assert.equal(mixed.calls.forward, 0);
      assert.equal(mixed.calls.deviceIds, 40 - Math.floor(40 / 3));
    }
  }
});

test('generate keeps the host path for greedy (device argmax), typical-p and penalties', async () => {
  const prompt = codec.encode('hi');
  const greedy = new FakeModel(true);
  await generateAll(greedy, codec, { promptIds: prompt, maxNewTokens: 5, stopAtEos: false, sampling: { temperature: 0 } });
  assert.deepEqual(greedy.calls, { forward: 0, forwardSample: 0, deviceIds: 0, argmax: 5 });
  for (const sampling of [{ typicalP: 0.9, seed: 1 }, { repetitionPenalty: 1.2, seed: 1 }]) {
    const m = new FakeModel(true);
    const host = new FakeModel(false);
    const a = await generateAll(m, codec, { promptIds: prompt, maxNewTokens: 8, stopAtEos: false, sampling });
    const b = await generateAll(host, codec, { promptIds: prompt, maxNewTokens: 8, stopAtEos: false, sampling });
    assert.deepEqual(m.calls, { forward: 8, forwardSample: 0, deviceIds: 0, argmax: 0 });
    assert.deepEqual(a.tokenIds, b.tokenIds);
  }
});
