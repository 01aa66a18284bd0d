import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generate, generateAll, PromptTokenError, type GenerationRequest, type GenerationResult, type KvCacheState } from '../../src/generate/generator.js';
import type { TextCodec } from '../../src/generate/textCodec.js';
import type { CausalLm } from '../../src/model/causalLm.js';
import { ContextOverflowError } from '../../src/errors.js';

const BOS = 1;
const EOS = 2;
const ALPHABET = '\n !#,.:?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** One id per character (ids 3..), plus <unk>=0, BOS=1, EOS=2. */
class CharCodec implements TextCodec {
  readonly bosId = BOS;
  readonly eosId = EOS;
  encode(text: string, opts: { addBos?: boolean } = {}): number[] {
    const ids = [...text].map((c) => {
      const i = ALPHABET.indexOf(c);
      return i < 0 ? 0 : i + 3;
    });
    return opts.addBos === false ? ids : [BOS, ...ids];
  }
  decode(ids: readonly number[]): string {
    return ids.map((id) => (id >= 3 ? ALPHABET[id - 3] : '')).join('');
  }
  createStreamDecoder(): { push(id: number): string; flush(): string } {
    return { push: (id) => this.decode([id]), flush: () => '' };
  }
}
const codec = new CharCodec();
const VOCAB = ALPHABET.length + 3;

/**
 * A model that spells `script` after the prompt: the logits after n generated tokens peak at
 * script[n] (EOS once the script runs out). It checks the CausalLm contract (the KV cache
 * holds 0..startPos-1, nothing past the context) and records every forward call.
 */
class ScriptedModel implements CausalLm {
  readonly vocabSize = VOCAB;
  readonly calls: { startPos: number; tokens: number[] }[] = [];
  readonly kv: number[] = [];
  promptLength = -1;
  constructor(
    private readonly script: readonly number[],
    readonly contextLength = 64,
  ) {}
  async forward(tokens: readonly number[], startPos: number): Promise<Float32Array> {
    assert.ok(startPos <= this.kv.length, `startPos ${startPos} past the cache (${this.kv.length})`);
    if (startPos + tokens.length > this.contextLength) throw new ContextOverflowError('past the context');
    this.calls.push({ startPos, tokens: [...tokens] });
    this.kv.length = startPos;
    this.kv.push(...tokens);
    if (this.promptLength < 0) this.promptLength = this.kv.length;
    const n = this.kv.length - this.promptLength;
    const logits = new Float32Array(VOCAB).fill(-5);
    logits[n < this.script.length ? this.script[n] : EOS] = 5;
    return logits;
  }
}

function spell(text: string): number[] {
  return codec.encode(text, { addBos: false });
}

async function collect(model: CausalLm, request: GenerationRequest, state?: KvCacheState): Promise<{ chunks: string[]; ids: number[]; result: GenerationResult }> {
  const it = generate(model, codec, request, state);
  const chunks: string[] = [];
  const ids: number[] = [];
  for (;;) {
    const step = await it.next();
    if (step.done === true) return { chunks, ids, result: step.value };
    chunks.push(step.value.text);
    ids.push(step.value.tokenId);
  }
}

const greedy = { temperature: 0 };
const prompt = codec.encode('Q: capital of France?\nA:');

test('"### Human:" stops the reply and is never streamed, however the script spells it', async () => {
  const model = new ScriptedModel(spell('Paris\n### Human: hi'));
  const { chunks, ids, result } = await collect(model, { promptIds: prompt, maxNewTokens: 50, sampling: greedy, stop: ['### Human:'] });
  assert.equal(result.text, 'Paris\n');
  assert.equal(result.finishReason, 'stop');
  assert.equal(result.stopString, '### Human:');
  assert.equal(chunks.join(''), result.text);
  assert.ok(chunks.every((c) => !c.includes('#')));
  // every sampled token streamed once, the stop string's tokens included, nothing after it
  assert.deepEqual(ids, spell('Paris\n### Human:'));
  assert.deepEqual(result.tokenIds, ids);
  assert.deepEqual(result.promptTokenIds, prompt);
  // prompt fed once, then one token per step; the final token is never fed
  assert.deepEqual(model.calls[0], { startPos: 0, tokens: prompt });
  assert.equal(model.calls.length, ids.length);
});

test('maxNewTokens ends with "length" and releases held-back text', async () => {
  const model = new ScriptedModel(spell('ab###c'));
  const { chunks, result } = await collect(model, { promptIds: prompt, maxNewTokens: 5, sampling: greedy, stop: ['### Human:'] });
  assert.equal(result.finishReason, 'length');
  assert.equal(result.text, 'ab###');
  assert.deepEqual(chunks, ['a', 'b', '', '', '###']);
  assert.equal(model.calls.length, 5); // prefill + 4 decode steps
});

test('EOS ends with "stop"; stopAtEos false keeps going', async () => {
  const script = [...spell('Hi'), EOS, ...spell('more')];
  const r1 = await collect(new ScriptedModel(script), { promptIds: prompt, maxNewTokens: 20, sampling: greedy });
  assert.equal(r1.result.finishReason, 'stop');
  assert.equal(r1.result.text, 'Hi');
  assert.equal(r1.result.stopString, null);
  assert.deepEqual(r1.result.tokenIds, [...spell('Hi'), EOS]);
  const r2 = await collect(new ScriptedModel(script), { promptIds: prompt, maxNewTokens: 6, sampling: greedy, stopAtEos: false });
  assert.equal(r2.result.finishReason, 'length');
  assert.equal(r2.result.text, 'Himor');
});

test('abort stops between tokens with "aborted"', async () => {
  const model = new ScriptedModel(spell('abcdefgh'));
  const ac = new AbortController();
  const it = generate(model, codec, { promptIds: prompt, maxNewTokens: 50, sampling: greedy, signal: ac.signal });
  const seen: string[] = [];
  let result: GenerationResult | undefined;
  for (;;) {
    const step = await it.next();
    if (step.done === true) {
      result = step.value;
      break;
    }
    seen.push(step.value.text);
    if (seen.length === 3) ac.abort();
  }
  assert.equal(result.finishReason, 'aborted');
  assert.equal(result.text, 'abc');
  assert.equal(model.calls.length, 3); // no forward after the abort
  // already aborted: nothing is fed at all
  const idle = new ScriptedModel(spell('x'));
  const r = await generateAll(idle, codec, { promptIds: prompt, maxNewTokens: 5, sampling: greedy, signal: AbortSignal.abort() });
  assert.equal(r.finishReason, 'aborted');
  assert.equal(idle.calls.length, 0);
});

test('a prompt that fills the context is a ContextOverflowError; a full context ends with "length"', async () => {
  const model = new ScriptedModel(spell('abcdefghijkl'), 8);
  await assert.rejects(
    generateAll(model, codec, { promptIds: codec.encode('1234567'), maxNewTokens: 5, sampling: greedy }),
    (e: unknown) => e instanceof ContextOverflowError && e.name === 'ContextOverflowError' && /8 tokens/.test(e.message) && /context window is 8/.test(e.message),
  );
  assert.equal(model.calls.length, 0);
  const r = await generateAll(model, codec, { promptIds: codec.encode('abcd'), maxNewTokens: 100, sampling: greedy });
  assert.equal(r.finishReason, 'length');
  assert.equal(r.tokenIds.length, 3); // 5 prompt + 3 = the 8-token window
  assert.ok(model.calls.every((c) => c.startPos + c.tokens.length <= 8));
});

test('a prompt id outside the model\'s vocabulary (a tokenizer with more pieces than the weights) is a PromptTokenError, before any feed', async () => {
  const model = new ScriptedModel(spell('ab'));
  for (const bad of [VOCAB, VOCAB + 100, -1, 1.5]) {
    await assert.rejects(
      generateAll(model, codec, { promptIds: [BOS, 5, bad], maxNewTokens: 5, sampling: greedy }),
      (e: unknown) => e instanceof PromptTokenError && e.message.includes(`token id ${bad}`) && e.message.includes(`0..${VOCAB - 1}`),
    );
  }
  assert.equal(model.calls.length, 0);
});

test('maxNewTokens 0 feeds nothing', async () => {
  const model = new ScriptedModel(spell('a'));
  const r = await generateAll(model, codec, { promptIds: prompt, maxNewTokens: 0, sampling: greedy });
  assert.equal(r.finishReason, 'length');
  assert.deepEqual(r.tokenIds, []);
  assert.equal(model.calls.length, 0);
});

test('the KV cache prefix is reused: a chat turn feeds only its new tokens', async () => {
  const model = new ScriptedModel(spell('Fine.'), 256);
  const state: KvCacheState = { cachedIds: [] };
  const turn1 = codec.encode('### Human: Hi\n### Assistant:');
  const r1 = await generateAll(model, codec, { promptIds: turn1, maxNewTokens: 20, sampling: greedy }, state);
  assert.equal(r1.text, 'Fine.');
  assert.equal(r1.promptTokensEvaluated, turn1.length);
  // the cache holds the prompt and every fed reply token (EOS, the last sampled, was not fed)
  assert.deepEqual(state.cachedIds, [...turn1, ...spell('Fine.')]);
  assert.deepEqual(model.kv, state.cachedIds);

  const turn2 = codec.encode('### Human: Hi\n### Assistant: Fine.\n### Human: And?\n### Assistant:');
  model.calls.length = 0;
  model.promptLength = turn2.length;
  const r2 = await generateAll(model, codec, { promptIds: turn2, maxNewTokens: 3, sampling: greedy }, state);
  const common = turn1.length; // " Fine." in turn 2 is spelled with a space the reply did not have
  assert.deepEqual(model.calls[0], { startPos: common, tokens: turn2.slice(common) });
  assert.equal(r2.promptTokensEvaluated, turn2.length - common);

  // the very same prompt again: only its last token is fed, for its logits
  model.calls.length = 0;
  const cached = [...state.cachedIds];
  const again = cached.slice(0, turn2.length);
  await generateAll(model, codec, { promptIds: again, maxNewTokens: 1, sampling: greedy }, state);
  assert.deepEqual(model.calls, [{ startPos: again.length - 1, tokens: [again[again.length - 1]] }]);
});

test('sampling is reproducible through generate with a seed', async () => {
  const model = (): CausalLm => ({
    vocabSize: VOCAB,
    contextLength: 64,
    forward: async () => Float32Array.from({ length: VOCAB }, (_, i) => (i >= 3 ? Math.sin(i) : -10)),
  });
  const req = { promptIds: prompt, maxNewTokens: 12, sampling: { temperature: 1, seed: 42 }, stopAtEos: false };
  const a = await generateAll(model(), codec, req);
  const b = await generateAll(model(), codec, req);
  assert.deepEqual(a.tokenIds, b.tokenIds);
  assert.equal(a.seed, 42);
});
