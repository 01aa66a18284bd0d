import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { MODEL_ID, health, startServer, waitFor, type RunningServer } from './serverHarness.js';

// One slot (the CPU engine has one KV cache) and room for one waiter, so the third request
// is refused. A long streamed completion holds the slot until its client aborts.
let srv: RunningServer;
let client: OpenAI;
before(async () => {
  srv = await startServer({ maxQueued: 1 });
  client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'x', maxRetries: 0 });
});
after(async () => srv.close());

const ask = (content: string): Promise<OpenAI.Chat.ChatCompletion> =>
  client.chat.completions.create({ model: MODEL_ID, messages: [{ role: 'user', content }], temperature: 0, max_tokens: 12 });

test('two concurrent requests both complete, each with its own reply', async () => {
  const solo = await ask('Tell me a joke.');
  const [a, b] = await Promise.all([ask('Tell me a joke.'), ask('What is two plus two?')]);
  assert.equal(a.choices[0].message.content, solo.choices[0].message.content, 'interleaving does not change a greedy reply');
  assert.ok(b.choices[0].message.content !== null);
  assert.equal((await health(srv.url)).running, 0);
});

test('queue full → 429; a client abort mid-stream frees the slot for the queued request', async () => {
  const controller = new AbortController();
  const long = await client.completions.create(
    { model: MODEL_ID, prompt: 'Once upon a time', max_tokens: 1500, temperature: 0, stream: true, ignore_eos: true } as OpenAI.CompletionCreateParamsStreaming,
    { signal: controller.signal },
  );
  const it = long[Symbol.asyncIterator]();
  const first = await it.next();
  assert.equal(first.done, false, 'the long stream started');

  const queued = ask('Hello there');
  await waitFor(async () => (await health(srv.url)).queued === 1, 10_000, 'the second request to queue');

  await assert.rejects(ask('A third one'), (err: unknown) => {
    assert.ok(err instanceof OpenAI.RateLimitError, `expected 429, got ${String(err)}`);
    assert.equal(err.status, 429);
    assert.equal(err.code, 'queue_full');
    return true;
  });

  const abortedAt = Date.now();
  controller.abort();
  await it.next().catch(() => undefined); // the client ends the stream (done or AbortError)
  const reply = await queued;
  assert.ok(reply.choices[0].message.content !== null);
  assert.ok(Date.now() - abortedAt < 15_000, 'the queued request ran soon after the abort, not after 1500 tokens');
  await waitFor(async () => { const h = await health(srv.url); return h.running === 0 && h.queued === 0; }, 5_000, 'an idle server');

  const metrics = await (await fetch(`${srv.url}/metrics`)).text();
  assert.match(metrics, /qllama_generations_total\{finish_reason="aborted"\} 1/);
  assert.match(metrics, /qllama_rejected_requests_total\{reason="queue_full"\} 1/);
  assert.match(metrics, /qllama_queue_depth 0/);
});

test('a queued request whose client leaves is dropped from the queue', async () => {
  const controller = new AbortController();
  const long = await client.completions.create(
    { model: MODEL_ID, prompt: 'The sea', max_tokens: 1500, temperature: 0, stream: true, ignore_eos: true } as OpenAI.CompletionCreateParamsStreaming,
    { signal: controller.signal },
  );
  const it = long[Symbol.asyncIterator]();
  await it.next();
  const waiting = new AbortController();
  const gone = client.chat.completions.create({ model: MODEL_ID, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 }, { signal: waiting.signal });
  await waitFor(async () => (await health(srv.url)).queued === 1, 10_000, 'the request to queue');
  waiting.abort();
  await assert.rejects(gone);
  await waitFor(async () => (await health(srv.url)).queued === 0, 5_000, 'the queue to empty');
  controller.abort();
  await it.next().catch(() => undefined);
  await waitFor(async () => (await health(srv.url)).running === 0, 5_000, 'the slot to free');
});
