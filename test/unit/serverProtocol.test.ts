import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ApiError } from '../../src/server/apiError.js';
import { parseChatCompletionRequest } from '../../src/server/openai/chatCompletion.js';
import { parseCompletionRequest } from '../../src/server/openai/completion.js';

const chat = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({ model: 'm', messages: [{ role: 'user', content: 'hi' }], ...extra });

function rejects400(fn: () => unknown, param: string | null, code?: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ApiError, `expected ApiError, got ${String(err)}`);
    assert.equal(err.status, 400);
    assert.equal(err.param, param);
    if (code) assert.equal(err.code, code);
    assert.equal(err.toBody().error.type, 'invalid_request_error');
    return true;
  });
}

test('a minimal chat request gets OpenAI defaults', () => {
  const r = parseChatCompletionRequest(chat());
  assert.equal(r.model, 'm');
  assert.equal(r.stream, false);
  assert.equal(r.maxTokens, undefined);
  assert.deepEqual(r.stop, []);
  assert.deepEqual(r.messages, [{ role: 'user', content: 'hi' }]);
});

test('sampling fields map to SamplingOptions, nulls count as absent', () => {
  const r = parseChatCompletionRequest(chat({
    temperature: 0.7, top_p: 0.9, seed: 42, presence_penalty: 0.5, frequency_penalty: -0.5,
    top_k: 40, min_p: 0.05, typical_p: 0.95, repetition_penalty: 1.1, max_tokens: 20, stop: '###', n: 1, user: 'x', logprobs: null,
  }));
  assert.deepEqual(
    { ...r.sampling },
    { temperature: 0.7, topP: 0.9, seed: 42, presencePenalty: 0.5, frequencyPenalty: -0.5, topK: 40, minP: 0.05, typicalP: 0.95, repetitionPenalty: 1.1, repeatLastN: undefined },
  );
  assert.equal(r.maxTokens, 20);
  assert.deepEqual(r.stop, ['###']);
});

test('max_completion_tokens wins over max_tokens', () => {
  assert.equal(parseChatCompletionRequest(chat({ max_tokens: 5, max_completion_tokens: 7 })).maxTokens, 7);
});

test('content parts are joined; developer is the system role', () => {
  const r = parseChatCompletionRequest({ model: 'm', messages: [{ role: 'developer', content: 'be brief' }, { role: 'user', content: [{ type: 'text', text: 'a' }, { type: 'text', text: 'b' }] }] });
  assert.deepEqual(r.messages, [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'ab' }]);
});

test('bad values are 400s naming the field', () => {
  rejects400(() => parseChatCompletionRequest(chat({ temperature: -1 })), 'temperature', 'invalid_value');
  rejects400(() => parseChatCompletionRequest(chat({ temperature: 'hot' })), 'temperature');
  rejects400(() => parseChatCompletionRequest(chat({ top_p: 0 })), 'top_p');
  rejects400(() => parseChatCompletionRequest(chat({ max_tokens: 0 })), 'max_tokens');
  rejects400(() => parseChatCompletionRequest(chat({ max_tokens: 1.5 })), 'max_tokens');
  rejects400(() => parseChatCompletionRequest(chat({ seed: -3 })), 'seed');
  rejects400(() => parseChatCompletionRequest(chat({ stop: [1] })), 'stop');
  rejects400(() => parseChatCompletionRequest(chat({ stream: 'yes' })), 'stream');
  rejects400(() => parseChatCompletionRequest(chat({ model: undefined })), 'model', 'missing_required_parameter');
  rejects400(() => parseChatCompletionRequest(chat({ messages: [] })), 'messages');
  rejects400(() => parseChatCompletionRequest(chat({ messages: [{ role: 'robot', content: 'x' }] })), 'messages[0].role');
  rejects400(() => parseChatCompletionRequest(chat({ messages: [{ role: 'system', content: 'x' }] })), 'messages');
  rejects400(() => parseChatCompletionRequest(chat({ messages: [{ role: 'tool', content: 'x' }] })), 'messages[0].role', 'unsupported_value');
  rejects400(() => parseChatCompletionRequest(chat({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: {} }] }] })), 'messages[0].content[0]');
  rejects400(() => parseChatCompletionRequest([1, 2]), null, 'invalid_body');
});

test('n > 1 is a clear 400; n = 1 is fine', () => {
  rejects400(() => parseChatCompletionRequest(chat({ n: 2 })), 'n', 'unsupported_value');
  assert.doesNotThrow(() => parseChatCompletionRequest(chat({ n: 1 })));
});

test('unknown fields are refused, like OpenAI; ignored ones pass', () => {
  rejects400(() => parseChatCompletionRequest(chat({ max_token: 5 })), 'max_token', 'unknown_parameter');
  assert.doesNotThrow(() => parseChatCompletionRequest(chat({ user: 'u', store: false, metadata: {} })));
});

test('unsupported fields: refused when switched on, accepted at their off value', () => {
  rejects400(() => parseChatCompletionRequest(chat({ tools: [{ type: 'function' }] })), 'tools', 'unsupported_parameter');
  rejects400(() => parseChatCompletionRequest(chat({ logprobs: true })), 'logprobs', 'unsupported_parameter');
  rejects400(() => parseChatCompletionRequest(chat({ logit_bias: { 5: 10 } })), 'logit_bias');
  rejects400(() => parseChatCompletionRequest(chat({ response_format: { type: 'json_object' } })), 'response_format');
  assert.doesNotThrow(() => parseChatCompletionRequest(chat({ tools: [], logprobs: false, logit_bias: {}, response_format: { type: 'text' }, tool_choice: 'none' })));
});

test('stream_options needs stream', () => {
  rejects400(() => parseChatCompletionRequest(chat({ stream_options: { include_usage: true } })), 'stream_options');
  assert.equal(parseChatCompletionRequest(chat({ stream: true, stream_options: { include_usage: true } })).includeUsage, true);
});

test('completion prompts: string, one-element array, token ids; several prompts refused', () => {
  assert.deepEqual(parseCompletionRequest({ model: 'm', prompt: 'abc' }).prompt, { kind: 'text', text: 'abc' });
  assert.deepEqual(parseCompletionRequest({ model: 'm', prompt: ['abc'] }).prompt, { kind: 'text', text: 'abc' });
  assert.deepEqual(parseCompletionRequest({ model: 'm', prompt: [1, 5, 9] }).prompt, { kind: 'ids', ids: [1, 5, 9] });
  assert.deepEqual(parseCompletionRequest({ model: 'm', prompt: [[1, 5]] }).prompt, { kind: 'ids', ids: [1, 5] });
  rejects400(() => parseCompletionRequest({ model: 'm', prompt: ['a', 'b'] }), 'prompt', 'unsupported_value');
  rejects400(() => parseCompletionRequest({ model: 'm' }), 'prompt', 'missing_required_parameter');
  rejects400(() => parseCompletionRequest({ model: 'm', prompt: '' }), 'prompt');
  rejects400(() => parseCompletionRequest({ model: 'm', prompt: 'x', suffix: 'y' }), 'suffix', 'unsupported_parameter');
  rejects400(() => parseCompletionRequest({ model: 'm', prompt: 'x', best_of: 3 }), 'best_of');
  rejects400(() => parseCompletionRequest({ model: 'm', prompt: 'x', messages: [] }), 'messages', 'unknown_parameter');
  assert.equal(parseCompletionRequest({ model: 'm', prompt: 'x', echo: true, best_of: 1 }).echo, true);
});

test('ignore_eos is read for both endpoints', () => {
  assert.equal(parseCompletionRequest({ model: 'm', prompt: 'x', ignore_eos: true }).ignoreEos, true);
  assert.equal(parseChatCompletionRequest(chat()).ignoreEos, false);
});
