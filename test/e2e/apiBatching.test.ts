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
