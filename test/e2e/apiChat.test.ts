import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { MODEL_ID, startServer, type RunningServer } from './serverHarness.js';

// The official OpenAI client against a real server with the embedded model (greedy, so the
// replies are reproducible). maxRetries 0: errors must surface as they are.
let srv: RunningServer;
let client: OpenAI;
before(async () => {
  srv = await startServer();
  client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});
after(async () => srv.close());

const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [{ role: 'user', content: 'What is the capital of France?' }];

test('GET /v1/models lists the loaded model', async () => {
  const list = await client.models.list();
  assert.deepEqual(list.data.map((m) => m.id), [MODEL_ID]);
  assert.equal((await client.models.retrieve(MODEL_ID)).id, MODEL_ID);
});

test('chat: streaming equals non-streaming (greedy); the reply never writes the next ### Human: turn', async () => {
  const full = await client.chat.completions.create({ model: MODEL_ID, messages, temperature: 0, max_tokens: 48 });
  const choice = full.choices[0];
  assert.equal(full.object, 'chat.completion');
  assert.equal(choice.message.role, 'assistant');
  assert.ok(choice.message.content && choice.message.content.length > 0, 'a non-empty reply');
  assert.ok(!choice.message.content.includes('### Human:'), `reply runs on: ${JSON.stringify(choice.message.content)}`);
  assert.ok(choice.finish_reason === 'stop' || choice.finish_reason === 'length');
  assert.ok(full.usage && full.usage.prompt_tokens > 10 && full.usage.completion_tokens > 0);
  assert.equal(full.usage.total_tokens, full.usage.prompt_tokens + full.usage.completion_tokens);

  const stream = await client.chat.completions.create({ model: MODEL_ID, messages, temperature: 0, max_tokens: 48, stream: true, stream_options: { include_usage: true } });
  let text = '';
  let finish: string | null = null;
  let usage: OpenAI.CompletionUsage | null | undefined;
  let chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    assert.equal(chunk.object, 'chat.completion.chunk');
    if (chunk.choices.length > 0) {
      text += chunk.choices[0].delta.content ?? '';
      finish = chunk.choices[0].finish_reason ?? finish;
    }
    if (chunk.usage) usage = chunk.usage;
  }
  assert.ok(chunks > 3, 'streamed in several chunks');
  assert.equal(text, choice.message.content);
  assert.equal(finish, choice.finish_reason);
  assert.deepEqual(usage, full.usage);
});

test('chat: a system message and an earlier exchange go through the template', async () => {
  const r = await client.chat.completions.create({
    model: MODEL_ID, temperature: 0, max_tokens: 24,
    messages: [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello.' }, { role: 'user', content: 'Name a color.' }],
  });
  assert.ok(!(r.choices[0].message.content ?? '').includes('### '), 'no turn header in the reply');
});

test('completions: max_tokens ends with finish_reason length and exact usage', async () => {
  const r = await client.completions.create({ model: MODEL_ID, prompt: 'Once upon a time', max_tokens: 6, temperature: 0, ignore_eos: true } as OpenAI.CompletionCreateParamsNonStreaming);
  assert.equal(r.object, 'text_completion');
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage?.completion_tokens, 6);
  assert.ok(r.choices[0].text.length > 0);
});

test('completions: a stop string ends the text before it (streaming too)', async () => {
  const base = await client.completions.create({ model: MODEL_ID, prompt: 'Once upon a time', max_tokens: 24, temperature: 0, ignore_eos: true } as OpenAI.CompletionCreateParamsNonStreaming);
  const text = base.choices[0].text;
  const words = text.split(/\s+/).filter((w) => w.length >= 3);
  assert.ok(words.length >= 2, `need words to stop at in ${JSON.stringify(text)}`);
  const stop = words[1];
  const cut = text.slice(0, text.indexOf(stop));
  const r = await client.completions.create({ model: MODEL_ID, prompt: 'Once upon a time', max_tokens: 24, temperature: 0, stop: [stop] });
  assert.equal(r.choices[0].text, cut);
  assert.equal(r.choices[0].finish_reason, 'stop');

  const stream = await client.completions.create({ model: MODEL_ID, prompt: 'Once upon a time', max_tokens: 24, temperature: 0, stop, stream: true });
  let streamed = '';
  let finish: string | null = null;
  for await (const c of stream) {
    streamed += c.choices[0]?.text ?? '';
    finish = c.choices[0]?.finish_reason ?? finish;
  }
  assert.equal(streamed, cut);
  assert.equal(finish, 'stop');
});

test('the same seed gives the same sampled reply', async () => {
  const ask = (): Promise<OpenAI.Completion> => client.completions.create({ model: MODEL_ID, prompt: 'The weather', max_tokens: 12, temperature: 1, seed: 1234, top_k: 40 } as OpenAI.CompletionCreateParamsNonStreaming);
  const [a, b] = [await ask(), await ask()];
  assert.equal(a.choices[0].text, b.choices[0].text);
});

test('continue_final_message extends an unfinished assistant reply', async () => {
  const full = await client.chat.completions.create({ model: MODEL_ID, messages, temperature: 0, max_tokens: 48 });
  const whole = full.choices[0].message.content ?? '';
  const words = whole.split(' ');
  assert.ok(words.length >= 4, whole);
  const head = words.slice(0, 2).join(' ');
  const res = await fetch(`${srv.url}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL_ID, messages: [...messages, { role: 'assistant', content: head }], continue_final_message: true, temperature: 0, max_tokens: 48 }),
  });
  assert.equal(res.status, 200);
  const rest = ((await res.json()) as OpenAI.Chat.ChatCompletion).choices[0].message.content ?? '';
  assert.equal((head + rest).trim(), whole.trim(), 'greedy continuation of the first words gives the same reply');
});

test('completions: echo puts the prompt in front', async () => {
  const r = await client.completions.create({ model: MODEL_ID, prompt: 'Once upon a time', max_tokens: 3, temperature: 0, echo: true });
  assert.ok(r.choices[0].text.startsWith('Once upon a time'));
});
