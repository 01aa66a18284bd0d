import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { MODEL_ID, health, startServer, waitFor, type RunningServer } from './serverHarness.js';

// A small version of `npm run bench:server` (bench/serverLoad.ts), plus the bug it found:
// a client that left while its request was still queued was answered as a 500 and logged as
// "internal error ... please report it".
let srv: RunningServer;
let client: OpenAI;
const log: string[] = [];
before(async () => {
  srv = await startServer({ maxQueued: 16, log: (line) => { log.push(line); } });
  client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'x', maxRetries: 0 });
});
after(async () => srv.close());

async function holdSlot(prompt: string): Promise<{ release(): Promise<void> }> {
  const controller = new AbortController();
  const stream = await client.completions.create(
    { model: MODEL_ID, prompt, max_tokens: 1500, temperature: 0, stream: true, ignore_eos: true } as OpenAI.CompletionCreateParamsStreaming,
    { signal: controller.signal },
  );
  const it = stream[Symbol.asyncIterator]();
  await it.next();
  return {
    async release() {
      controller.abort();
      await it.next().catch(() => undefined);
    },
  };
}

test('a client that leaves while queued is dropped quietly: no internal error, counted as client_closed', async () => {
  const hold = await holdSlot('The river');
  const waiting = new AbortController();
  const gone = client.chat.completions.create({ model: MODEL_ID, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 }, { signal: waiting.signal });
  await waitFor(async () => (await health(srv.url)).queued === 1, 10_000, 'the request to queue');
  waiting.abort();
  await assert.rejects(gone);
  await waitFor(async () => (await health(srv.url)).queued === 0, 5_000, 'the queue to empty');
  await hold.release();
  await waitFor(async () => (await health(srv.url)).running === 0, 5_000, 'the slot to free');

  assert.deepEqual(log.filter((l) => l.includes('internal error')), [], 'a client leaving is not a server error');
  const metrics = await (await fetch(`${srv.url}/metrics`)).text();
  assert.match(metrics, /qllama_rejected_requests_total\{reason="client_gone"\} 1/);
  assert.doesNotMatch(metrics, /qllama_http_requests_total\{[^}]*status="500"\}/);
});

test('12 concurrent streams, 3 leaving mid-stream: the rest equal their non-streaming replies', async () => {
  const prompts = ['Name a color.', 'What is two plus two?', 'Say hello.'];
  const body = (content: string) => ({ model: MODEL_ID, messages: [{ role: 'user' as const, content }], temperature: 0, max_tokens: 16 });
  const refs = new Map<string, string>();
  for (const p of prompts) refs.set(p, (await client.chat.completions.create(body(p))).choices[0].message.content ?? '');

  const runs = Array.from({ length: 12 }, async (_, i) => {
    const prompt = prompts[i % prompts.length];
    const leaves = i % 4 === 1;
    const controller = new AbortController();
    const stream = await client.chat.completions.create({ ...body(prompt), stream: true }, { signal: controller.signal });
    let text = '';
    let finish: string | null = null;
    try {
      for await (const chunk of stream) {
        text += chunk.choices[0]?.delta.content ?? '';
        finish = chunk.choices[0]?.finish_reason ?? finish;
        if (leaves && text !== '') controller.abort();
      }
    } catch (err) {
      if (!leaves) throw err;
      return 'left';
    }
    if (controller.signal.aborted) return 'left'; // the openai client ends an aborted stream quietly
    assert.equal(text, refs.get(prompt), `stream ${i}`);
    assert.ok(finish === 'stop' || finish === 'length', `stream ${i} finish_reason ${finish}`);
    return 'complete';
  });
  const outcomes = await Promise.all(runs);
  assert.equal(outcomes.filter((o) => o === 'complete').length, 9);
  await waitFor(async () => { const h = await health(srv.url); return h.running === 0 && h.queued === 0; }, 5_000, 'an idle server');
  assert.equal((await health(srv.url)).status, 'ok');
  assert.deepEqual(log.filter((l) => l.includes('internal error')), []);
});
