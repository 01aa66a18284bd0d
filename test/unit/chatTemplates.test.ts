import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Template } from '@huggingface/jinja';
import type { ChatMessage } from '../../src/chat/chatTemplate.js';
import { BUILTIN_TEMPLATES, JinjaChatTemplate, jinjaSourceFromTokenizerConfig, ChatTemplateError } from '../../src/chat/templates/index.js';

// The conversation every template renders: a user turn, a reply, and the next user turn.
const TWO_TURNS: ChatMessage[] = [
  { role: 'user', content: 'Hello, how are you?' },
  { role: 'assistant', content: "I'm doing great. How can I help you today?" },
  { role: 'user', content: "I'd like to show off how chat templating works!" },
];
const PIRATE = 'You are a friendly chatbot who always responds in the style of a pirate';

/**
 * text-generation-webui's instruction templates (instruction-templates/*.yaml at the commit
 * before #6904, "Restructure the repository"), verbatim: upstream's own renderer, run here by
 * @huggingface/jinja, gives the expected strings for the "### …" formats.
 */
const WEBUI = {
  StableVicuna: `{%- set ns = namespace(found=false) -%}
{%- for message in messages -%}
    {%- if message['role'] == 'system' -%}
        {%- set ns.found = true -%}
    {%- endif -%}
{%- endfor -%}
{%- if not ns.found -%}
    {{- '' + '### Assistant: I am StableVicuna, a large language model created by CarperAI. I am here to chat!' + '\\n\\n' -}}
{%- endif %}
{%- for message in messages %}
    {%- if message['role'] == 'system' -%}
        {{- '' + message['content'] + '\\n\\n' -}}
    {%- else -%}
        {%- if message['role'] == 'user' -%}
            {{-'### Human: ' + message['content'] + '\\n'-}}
        {%- else -%}
            {{-'### Assistant: ' + message['content'] + '\\n\\n' -}}
        {%- endif -%}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{-'### Assistant:'-}}
{%- endif -%}`,
  'Vicuna-v0': `{%- set ns = namespace(found=false) -%}
{%- for message in messages -%}
    {%- if message['role'] == 'system' -%}
        {%- set ns.found = true -%}
    {%- endif -%}
{%- endfor -%}
{%- if not ns.found -%}
    {{- '' + 'A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the human\\'s questions.' + '\\n\\n' -}}
{%- endif %}
{%- for message in messages %}
    {%- if message['role'] == 'system' -%}
        {{- '' + message['content'] + '\\n\\n' -}}
    {%- else -%}
        {%- if message['role'] == 'user' -%}
            {{-'### Human: ' + message['content'] + '\\n'-}}
        {%- else -%}
            {{-'### Assistant: ' + message['content'] + '\\n' -}}
        {%- endif -%}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{-'### Assistant:'-}}
{%- endif -%}`,
  Alpaca: `{%- set ns = namespace(found=false) -%}
{%- for message in messages -%}
    {%- if message['role'] == 'system' -%}
        {%- set ns.found = true -%}
    {%- endif -%}
{%- endfor -%}
{%- if not ns.found -%}
    {{- '' + 'Below is an instruction that describes a task. Write a response that appropriately completes the request.' + '\\n\\n' -}}
{%- endif %}
{%- for message in messages %}
    {%- if message['role'] == 'system' -%}
        {{- '' + message['content'] + '\\n\\n' -}}
    {%- else -%}
        {%- if message['role'] == 'user' -%}
            {{-'### Instruction:\\n' + message['content'] + '\\n\\n'-}}
        {%- else -%}
            {{-'### Response:\\n' + message['content'] + '\\n\\n' -}}
        {%- endif -%}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{-'### Response:\\n'-}}
{%- endif -%}`,
};

/** chat_template of meta-llama/Llama-2-13b-chat-hf tokenizer_config.json (as quoted in swift-transformers' tests). */
const LLAMA2_CHAT_TEMPLATE =
  "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

function webui(name: keyof typeof WEBUI, messages: ChatMessage[], addGenerationPrompt = true): string {
  return new Template(WEBUI[name]).render({ messages, add_generation_prompt: addGenerationPrompt });
}

test('StableVicuna renders the upstream format exactly', () => {
  const t = BUILTIN_TEMPLATES['stable-vicuna'];
  const expected =
    '### Assistant: I am StableVicuna, a large language model created by CarperAI. I am here to chat!\n\n' +
    '### Human: Hello, how are you?\n' +
    "### Assistant: I'm doing great. How can I help you today?\n\n" +
    "### Human: I'd like to show off how chat templating works!\n" +
    '### Assistant:';
  assert.equal(t.render(TWO_TURNS, { addGenerationPrompt: true }), expected);
  assert.equal(webui('StableVicuna', TWO_TURNS), expected);
  const withSystem: ChatMessage[] = [{ role: 'system', content: 'Be brief.' }, ...TWO_TURNS];
  assert.equal(t.render(withSystem, { addGenerationPrompt: true }), webui('StableVicuna', withSystem));
  assert.equal(t.render(TWO_TURNS, { addGenerationPrompt: false }), webui('StableVicuna', TWO_TURNS, false));
  assert.deepEqual(t.stop, ['### Human:']);
});

test('Vicuna v0 and Alpaca match text-generation-webui', () => {
  for (const [name, ours] of [
    ['Vicuna-v0', BUILTIN_TEMPLATES['vicuna-v0']],
    ['Alpaca', BUILTIN_TEMPLATES.alpaca],
  ] as const) {
    for (const msgs of [TWO_TURNS, [{ role: 'system', content: PIRATE } as const, ...TWO_TURNS]]) {
      for (const gen of [true, false]) assert.equal(ours.render(msgs, { addGenerationPrompt: gen }), webui(name, msgs, gen), `${name} gen=${gen}`);
    }
  }
  assert.equal(
    BUILTIN_TEMPLATES.alpaca.render([{ role: 'user', content: 'List three colors.' }], { addGenerationPrompt: true }),
    'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n' +
      '### Instruction:\nList three colors.\n\n### Response:\n',
  );
});

test('Vicuna v1.1 renders FastChat vicuna_v1.1 (ADD_COLON_TWO, sep " ", sep2 "</s>")', () => {
  // FastChat get_prompt: system + sep, then "ROLE: msg" + seps[i % 2] per message, "ASSISTANT:" to finish
  const expected =
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions. " +
    'USER: Hello, how are you? ' +
    "ASSISTANT: I'm doing great. How can I help you today?</s>" +
    "USER: I'd like to show off how chat templating works! " +
    'ASSISTANT:';
  assert.equal(BUILTIN_TEMPLATES['vicuna-v1.1'].render(TWO_TURNS, { addGenerationPrompt: true }), expected);
});

test("LLaMA-2 chat equals Meta's HF chat_template, with and without a system prompt", () => {
  const t = BUILTIN_TEMPLATES['llama-2'];
  const withSystem: ChatMessage[] = [{ role: 'system', content: PIRATE }, ...TWO_TURNS];
  // the expected string of transformers' / swift-transformers' chat-template tests
  const expected =
    `<s>[INST] <<SYS>>\n${PIRATE}\n<</SYS>>\n\nHello, how are you? [/INST] I'm doing great. How can I help you today? </s>` +
    "<s>[INST] I'd like to show off how chat templating works! [/INST]";
  assert.equal(t.render(withSystem, { addGenerationPrompt: true }), expected);
  const hf = new Template(LLAMA2_CHAT_TEMPLATE);
  for (const msgs of [withSystem, TWO_TURNS, TWO_TURNS.slice(0, 2)]) {
    assert.equal(t.render(msgs, { addGenerationPrompt: true }), hf.render({ messages: msgs, bos_token: '<s>', eos_token: '</s>' }));
  }
});

test('a Jinja chat_template from a tokenizer_config.json string', () => {
  const tokenizerConfig = JSON.parse(
    JSON.stringify({
      add_bos_token: true,
      bos_token: { __type: 'AddedToken', content: '<s>', lstrip: false, normalized: true, rstrip: false, single_word: false },
      eos_token: '</s>',
      chat_template: LLAMA2_CHAT_TEMPLATE,
    }),
  ) as unknown;
  const source = jinjaSourceFromTokenizerConfig(tokenizerConfig);
  assert.ok(source);
  assert.equal(source.bosToken, '<s>');
  const t = new JinjaChatTemplate(source);
  assert.equal(t.render(TWO_TURNS, { addGenerationPrompt: true }), BUILTIN_TEMPLATES['llama-2'].render(TWO_TURNS, { addGenerationPrompt: true }));
  // raise_exception in the template becomes a named error
  assert.throws(() => t.render([{ role: 'assistant', content: 'x' }], { addGenerationPrompt: true }), (e: unknown) => e instanceof ChatTemplateError && /alternate/.test(e.message));
  // add_generation_prompt reaches the template; the list form picks "default"
  const chatml = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
  const listForm = jinjaSourceFromTokenizerConfig({ chat_template: [{ name: 'tool_use', template: 'x' }, { name: 'default', template: chatml }] });
  assert.ok(listForm);
  assert.equal(
    new JinjaChatTemplate(listForm).render([{ role: 'user', content: 'hi' }], { addGenerationPrompt: true }),
    '<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n',
  );
  assert.equal(jinjaSourceFromTokenizerConfig({ bos_token: '' }), null);
  assert.throws(() => new JinjaChatTemplate({ chatTemplate: '{% for %}', bosToken: '', eosToken: '' }), ChatTemplateError);
});
