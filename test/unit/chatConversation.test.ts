import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Conversation } from '../../src/chat/conversation.js';
import { encodeChatPrompt } from '../../src/chat/encodePrompt.js';
import { BUILTIN_TEMPLATES } from '../../src/chat/templates/index.js';
import type { TextCodec } from '../../src/generate/textCodec.js';

test('a StableVicuna conversation renders for completion with its stop string', () => {
  const c = new Conversation(BUILTIN_TEMPLATES['stable-vicuna']);
  c.addUser('What is the capital of France?');
  const first = c.renderForCompletion();
  assert.ok(first.prompt.endsWith('### Human: What is the capital of France?\n### Assistant:'));
  assert.deepEqual(first.stop, ['### Human:']);
  c.addAssistant(' Paris.\n'); // the raw reply, with the model's leading space
  c.addUser('And of Italy?');
  assert.equal(
    c.renderForCompletion().prompt,
    '### Assistant: I am StableVicuna, a large language model created by CarperAI. I am here to chat!\n\n' +
      '### Human: What is the capital of France?\n### Assistant: Paris.\n\n### Human: And of Italy?\n### Assistant:',
  );
  c.reset();
  assert.equal(c.renderForCompletion().prompt, '### Assistant: I am StableVicuna, a large language model created by CarperAI. I am here to chat!\n\n### Assistant:');
});

test("system prompt: the template's default, a custom one, or none", () => {
  const t = BUILTIN_TEMPLATES['vicuna-v1.1'];
  const dflt = new Conversation(t).addUser('Hi');
  assert.ok(dflt.renderForCompletion().prompt.startsWith('A chat between a curious user'));
  assert.equal(new Conversation(t, { system: 'Be terse.' }).addUser('Hi').renderForCompletion().prompt, 'Be terse. USER: Hi ASSISTANT:');
  assert.equal(new Conversation(BUILTIN_TEMPLATES.alpaca, { system: '' }).addUser('Hi').renderForCompletion().prompt, '### Instruction:\nHi\n\n### Response:\n');
  assert.equal(new Conversation(BUILTIN_TEMPLATES['llama-2']).addUser('Hi').renderForCompletion().prompt, '<s>[INST] Hi [/INST]');
  const sys = new Conversation(BUILTIN_TEMPLATES['llama-2'], { system: 'S' }).addUser('Hi');
  assert.equal(sys.renderForCompletion().prompt, '<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nHi [/INST]');
  assert.equal(sys.pop()?.content, 'Hi');
});

/** Every character is its code point + 10; BOS 1, EOS 2. */
const codec: TextCodec = {
  bosId: 1,
  eosId: 2,
  encode: (text, opts) => [...(opts?.addBos === false ? [] : [1]), ...[...text].map((c) => c.codePointAt(0)! + 10)],
  decode: (ids) => String.fromCodePoint(...ids.filter((i) => i > 2).map((i) => i - 10)),
  createStreamDecoder: () => ({ push: () => '', flush: () => '' }),
};
const enc = (s: string): number[] => codec.encode(s, { addBos: false });

test('encodeChatPrompt maps the literal <s> and </s> of a rendered prompt to BOS and EOS', () => {
  assert.deepEqual(encodeChatPrompt(codec, '<s>[INST] a [/INST] b </s><s>[INST] c [/INST]'), [1, ...enc('[INST] a [/INST] b '), 2, 1, ...enc('[INST] c [/INST]')]);
  assert.deepEqual(encodeChatPrompt(codec, 'S USER: a ASSISTANT: b</s>USER: c ASSISTANT:'), [1, ...enc('S USER: a ASSISTANT: b'), 2, ...enc('USER: c ASSISTANT:')]);
  assert.deepEqual(encodeChatPrompt(codec, '### Human: hi'), [1, ...enc('### Human: hi')]);
});
