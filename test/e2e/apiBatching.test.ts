import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { BatchingEngine } from '../../src/server/engine/batchingEngine.js';
import type { BatchStats } from '../../src/server/engine/stepLoop.js';
import { MODEL_ID, health, startServer, waitFor, type RunningServer } from './serverHarness.js';

// --max-concurrency 3 on the CPU backend: the batching engine, three KV caches, and each decode
// step one forward pass over every running sequence. Greedy replies must not depend on what else
// runs: three decode rows stay on the CPU backend's per-row GEMV, the kernel one sequence uses.
let srv: RunningServer;
let client: OpenAI;
before(async () => {
  srv = await startServer({ maxConcurrency: 3, maxQueued: 4 });
  client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'x', maxRetries: 0 });
});
after(async () => srv.close());

function stats(): BatchStats {
  const engine = srv.server.models.loadedEngine;
  assert.ok(engine instanceof BatchingEngine, '--max-concurrency 3 loads the batching engine');
  assert.equal(engine.maxSequences, 3);
  return { ...engine.batching };
}

const QUESTIONS = ['Tell me a joke.', 'What is two plus two?', 'Name a color.'];

const chat = (content: string): Promise<OpenAI.Chat.ChatCompletion> =>
  client.chat.completions.create({ model: MODEL_ID, messages: [{ role: 'user', content }], temperature: 0, max_tokens: 64 });

test('3 concurrent chat completions return what the same requests return one after another, decoded as one batch', async () => {
  const alone: string[] = [];
  for (const q of QUESTIONS) alone.push((await chat(q)).choices[0].message.content ?? '');
  const before = stats();
  assert.equal(before.maxBatchSize, 1, 'requests one after another decode alone');

  const together = await Promise.all(QUESTIONS.map(chat));
  assert.deepEqual(together.map((r) => r.choices[0].message.content), alone);
  const s = stats();
  assert.equal(s.maxBatchSize, 3, 'some decode step ran all three sequences');
  assert.ok(s.rows - before.rows > s.steps - before.steps, `fewer steps (${s.steps - before.steps}) than decoded tokens (${s.rows - before.rows})`);

  const metrics = await (await fetch(`${srv.url}/metrics`)).text();
  assert.match(metrics, /^qllama_batch_size \d+$/m);
  const value = (name: string): number => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(metrics)?.[1] ?? NaN);
  assert.equal(value('qllama_decode_steps_total'), s.steps);
  assert.equal(value('qllama_decode_step_sequences_total'), s.rows);
  assert.equal(value('qllama_prefill_chunks_total'), s.prefillChunks);
  assert.ok(s.prefillChunks - before.prefillChunks >= 3, 'each of the three prompts was fed as at least one chunk');
  assert.equal((await health(srv.url)).running, 0);
});

/** A raw completion (no stop strings, EOS ignored) streamed to the end, or until `abortAfter` chunks. */
async function stream(prompt: string, maxTokens: number, abortAfter = Infinity): Promise<{ text: string; chunks: number }> {
  const controller = new AbortController();
  const s = await client.completions.create(
    { model: MODEL_ID, prompt, max_tokens: maxTokens, temperature: 0, stream: true, ignore_eos: true } as OpenAI.CompletionCreateParamsStreaming,
    { signal: controller.signal },
  );
  let text = '', chunks = 0;
  try {
    for await (const chunk of s) {
      text += chunk.choices[0]?.text ?? '';
      if (++chunks >= abortAfter) controller.abort();
    }
  } catch (err) {
    if (!controller.signal.aborted) throw err;
  }
  return { text, chunks };
}

test('a client that aborts mid-stream leaves the replies of the runs batched with it unchanged', async () => {
  const prompts = ['Once upon a time', 'The history of the city', 'In the morning'];
  const alone = [];
  for (const p of prompts) alone.push((await stream(p, 120)).text);
  const before = stats();

  const [a, gone, c] = await Promise.all([stream(prompts[0], 120), stream(prompts[1], 120, 10), stream(prompts[2], 120)]);
  assert.equal(a.text, alone[0]);
  assert.equal(c.text, alone[2]);
  assert.ok(gone.chunks >= 10 && gone.text.length < alone[1].length, 'the aborted stream ended early');
  assert.ok(alone[1].startsWith(gone.text), 'what the aborted stream got is the start of its reply');
  assert.ok(stats().maxBatchSize >= 2 && stats().rows - before.rows > stats().steps - before.steps, 'the three runs were batched');

  // its slot was freed: all three are free again and a full batch still runs right
  await waitFor(async () => (await health(srv.url)).running === 0, 5_000, 'the slots to free');
  const metrics = await (await fetch(`${srv.url}/metrics`)).text();
  assert.match(metrics, /qllama_generations_total\{finish_reason="aborted"\} 1/);
  const again = await Promise.all(prompts.map((p) => stream(p, 120)));
  assert.deepEqual(again.map((r) => r.text), alone);
});

test('more requests than slots wait their turn and still get their own replies', async () => {
  const alone = (await chat(QUESTIONS[1])).choices[0].message.content;
  const replies = await Promise.all([0, 1, 2, 3, 4].map(() => chat(QUESTIONS[1])));
  for (const r of replies) assert.equal(r.choices[0].message.content, alone);
  assert.equal((await health(srv.url)).running, 0);
});

/** About 1,400 tokens: six prompt chunks of the CPU backend's 256 rows. */
const LONG_PROMPT = Array.from({ length: 56 }, (_, i) => `Line ${i + 1}: the ${['quick', 'slow', 'red', 'old'][i % 4]} fox jumps over the lazy dog near the river.`).join('\n');

/** A streamed raw completion; `onChunk` sees each chunk's count as it arrives. */
async function streamOn(c: OpenAI, prompt: string, maxTokens: number, onChunk: (n: number) => void = () => {}): Promise<string> {
  const s = await c.completions.create(
    { model: MODEL_ID, prompt, max_tokens: maxTokens, temperature: 0, stream: true, ignore_eos: true } as OpenAI.CompletionCreateParamsStreaming,
  );
  let text = '', n = 0;
  for await (const chunk of s) {
    text += chunk.choices[0]?.text ?? '';
    onChunk(++n);
  }
  return text;
}

/** A one-sequence server beside the batching one: its replies are the requests run one after another, prompts unchunked. */
async function withSingle<T>(f: (c: OpenAI) => Promise<T>): Promise<T> {
  const single = await startServer({ maxConcurrency: 1 });
  try {
    return await f(new OpenAI({ baseURL: `${single.url}/v1`, apiKey: 'x', maxRetries: 0 }));
  } finally {
    await single.close();
  }
}

test('a long prompt fed in chunks while another run decodes: both replies are what they are one after another', async () => {
  // a prompt no slot holds yet: a reused prefix would feed its last id as a decode row, not in a prompt chunk,
  // which may round differently than the one-sequence server's prompt pass
  const short = 'The old castle on the hill';
  const [aloneShort, aloneLong] = await withSingle(async (c) => [await streamOn(c, short, 200), await streamOn(c, LONG_PROMPT, 32)]);
  const before = stats();

  // the long prompt (in no slot yet either) arrives once the short run is decoding
  let shortChunks = 0, shortDone = false, shortAtLongStart = -1;
  const shortRun = streamOn(client, short, 200, (n) => { shortChunks = n; }).finally(() => { shortDone = true; });
  await waitFor(() => shortChunks >= 3, 10_000, 'the short run to decode');
  const longRun = streamOn(client, LONG_PROMPT, 32, (n) => {
    if (n === 1) shortAtLongStart = shortDone ? Infinity : shortChunks;
  });
  const [gotShort, gotLong] = await Promise.all([shortRun, longRun]);
  assert.equal(gotShort, aloneShort);
  assert.equal(gotLong, aloneLong);
  assert.ok(shortAtLongStart < 200, `the short run was still decoding when the long reply began (${shortAtLongStart} chunks in)`);
  const s = stats();
  assert.ok(s.prefillChunks - before.prefillChunks >= 6, `the long prompt was fed in chunks (${s.prefillChunks - before.prefillChunks})`);
  assert.ok(s.maxBatchSize >= 2, 'the two runs decoded together');
});

test('chunked prefill, with the slot\'s prefix reused, answers as the one-sequence engine does', async () => {
  const complete = async (c: OpenAI, prompt: string): Promise<string> =>
    (await c.completions.create({ model: MODEL_ID, prompt, max_tokens: 24, temperature: 0 })).choices[0].text;
  const first = await complete(client, LONG_PROMPT);
  // the follow-up extends the first prompt: its slot feeds only the new part, from a position inside a chunk
  const follow = `${LONG_PROMPT}${first}\nLine 57: the`;
  const chunksBefore = stats().prefillChunks;
  const batched = [first, await complete(client, follow)];
  assert.equal(stats().prefillChunks - chunksBefore, 1, 'the follow-up fed only its new part');
  assert.deepEqual(batched, await withSingle(async (c) => [await complete(c, LONG_PROMPT), await complete(c, follow)]));
});
