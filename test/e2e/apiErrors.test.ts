import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { MODEL_ID, startServer, type RunningServer } from './serverHarness.js';

let srv: RunningServer;
let client: OpenAI;
before(async () => {
  srv = await startServer();
  client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});
after(async () => srv.close());

const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [{ role: 'user', content: 'Hi' }];

/** The client's error for a rejected call, with the OpenAI error object it parsed. */
async function apiError(call: () => Promise<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
  try {
    await call();
  } catch (err) {
    if (err instanceof OpenAI.APIError) return err;
    throw err;
  }
  assert.fail('the call succeeded but should have been refused');
}

test('bad parameter values: 400 naming the field', async () => {
  const err = await apiError(() => client.chat.completions.create({ model: MODEL_ID, messages, temperature: -1 }));
  assert.equal(err.status, 400);
  assert.ok(err instanceof OpenAI.BadRequestError);
  assert.equal(err.param, 'temperature');
  assert.match(err.message, /temperature/);
  const topP = await apiError(() => client.chat.completions.create({ model: MODEL_ID, messages, top_p: 7 }));
  assert.equal(topP.param, 'top_p');
});

test('n > 1: a clear 400', async () => {
  const err = await apiError(() => client.chat.completions.create({ model: MODEL_ID, messages, n: 3 }));
  assert.equal(err.status, 400);
  assert.equal(err.param, 'n');
  assert.match(err.message, /one choice/);
});

test('unsupported fields switched on are 400; unknown fields are 400', async () => {
  const tools = await apiError(() => client.chat.completions.create({ model: MODEL_ID, messages, tools: [{ type: 'function', function: { name: 'f' } }] }));
  assert.equal(tools.status, 400);
  assert.equal(tools.code, 'unsupported_parameter');
  const res = await fetch(`${srv.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL_ID, messages, max_token: 5 }) });
  assert.equal(res.status, 400);
  const body = (await res.json()) as { error: { message: string; type: string; param: string; code: string } };
  assert.deepEqual(body.error, { message: 'Unrecognized request argument supplied: max_token', type: 'invalid_request_error', param: 'max_token', code: 'unknown_parameter' });
});

test('prompt + max_tokens beyond the context: 400 context_length_exceeded', async () => {
  const err = await apiError(() => client.chat.completions.create({ model: MODEL_ID, messages, max_tokens: 5000 }));
  assert.equal(err.status, 400);
  assert.equal(err.code, 'context_length_exceeded');
  assert.match(err.message, /maximum context length is 2048 tokens/);
  const long = 'word '.repeat(2100);
  const tooLong = await apiError(() => client.completions.create({ model: MODEL_ID, prompt: long }));
  assert.equal(tooLong.code, 'context_length_exceeded');
});

test('a model name that is not loaded: 404 model_not_found', async () => {
  const err = await apiError(() => client.chat.completions.create({ model: 'gpt-4o', messages }));
  assert.equal(err.status, 404);
  assert.equal(err.code, 'model_not_found');
  assert.match(err.message, /tiny-vicuna-4k/);
});

test('malformed JSON and oversized bodies: OpenAI-style 400 / 413', async () => {
  const bad = await fetch(`${srv.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"model": ' });
  assert.equal(bad.status, 400);
  assert.equal(((await bad.json()) as { error: { type: string } }).error.type, 'invalid_request_error');
  const big = await fetch(`${srv.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL_ID, prompt: 'x'.repeat(2 * 1024 * 1024) }) });
  assert.equal(big.status, 413);
});

test('--api-key: 401 without or with a wrong key; the right key works; /health stays open', async () => {
  const secured = await startServer({ apiKey: 'sekret' });
  try {
    const wrong = new OpenAI({ baseURL: `${secured.url}/v1`, apiKey: 'nope', maxRetries: 0 });
    const err = await apiError(() => wrong.models.list());
    assert.equal(err.status, 401);
    assert.ok(err instanceof OpenAI.AuthenticationError);
    const none = await fetch(`${secured.url}/v1/models`);
    assert.equal(none.status, 401);
    const mgmt = await fetch(`${secured.url}/api/models`);
    assert.equal(mgmt.status, 401);
    const right = new OpenAI({ baseURL: `${secured.url}/v1`, apiKey: 'sekret', maxRetries: 0 });
    assert.equal((await right.models.list()).data[0].id, MODEL_ID);
    assert.equal((await fetch(`${secured.url}/health`)).status, 200);
  } finally {
    await secured.close();
  }
});

test('no model loaded: 503 that says how to load one', async () => {
  const empty = await startServer({ load: false });
  try {
    const c = new OpenAI({ baseURL: `${empty.url}/v1`, apiKey: 'x', maxRetries: 0 });
    assert.deepEqual((await c.models.list()).data, []);
    const err = await apiError(() => c.chat.completions.create({ model: MODEL_ID, messages }));
    assert.equal(err.status, 503);
    assert.match(err.message, /api\/models\/load/);
  } finally {
    await empty.close();
  }
});
