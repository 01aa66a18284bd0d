import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { DATA } from '../support/paths.js';
import { selectTemplate, matchName } from '../../src/chat/templateSelect.js';
import { UsageError } from '../../src/errors.js';

function json(file: string): unknown {
  return JSON.parse(readFileSync(file, 'utf8')) as unknown;
}

test('model names pick templates as text-generation-webui models/config.yaml does', () => {
  const cases: [string, string][] = [
    ['TheBloke_stable-vicuna-13B-GPTQ', 'stable-vicuna'],
    ['/models/TheBloke_stable-vicuna-13B-GPTQ', 'stable-vicuna'],
    ['stable-vicuna-13B-GPTQ-4bit.compat.no-act-order', 'stable-vicuna'],
    ['vicuna-7b-v1.1', 'vicuna-v1.1'],
    ['TheBloke_vicuna-13B-1.1-GPTQ-4bit-128g', 'vicuna-v1.1'],
    ['lmsys_vicuna-7b-v1.5', 'vicuna-v1.1'],
    ['vicuna-13b-gptq-4bit-128g', 'vicuna-v0'], // the v0 GPTQ checkpoint: no version in its name
    ['tiny-vicuna-4k', 'vicuna-v0'],
    ['llama-2-7b-chat', 'llama-2'],
    ['TheBloke_Llama-2-13B-chat-GPTQ', 'llama-2'],
    ['alpaca-7b-native-4bit', 'alpaca'],
    ['wizardlm-13b-v1.2', 'vicuna-v1.1'],
  ];
  for (const [name, expected] of cases) {
    const choice = selectTemplate(name);
    assert.equal(choice.name, expected, `${name}: ${choice.reason}`);
    assert.equal(choice.template.name, expected);
    assert.match(choice.reason, /matches/);
  }
  assert.equal(matchName('llama-7b'), null);
});

test('unknown names fall back to Alpaca and say so; config.json _name_or_path is a second chance', () => {
  const fallback = selectTemplate('/models/some-model');
  assert.equal(fallback.name, 'alpaca');
  assert.match(fallback.reason, /no rule matches "some-model"/);
  const fromConfig = selectTemplate('/models/snapshot-1234', undefined, { config: { _name_or_path: 'TheBloke/stable-vicuna-13B-HF' } });
  assert.equal(fromConfig.name, 'stable-vicuna');
  assert.match(fromConfig.reason, /_name_or_path/);
});

test('real side-car folders', () => {
  const v11 = path.join(DATA, 'vicuna-7b-v1.1-hf-config');
  assert.equal(selectTemplate(v11, json(path.join(v11, 'tokenizer_config.json')), { config: json(path.join(v11, 'config.json')) }).name, 'vicuna-v1.1');
  const v0 = path.join(DATA, 'vicuna-13b-gptq-4bit-128g-sidecar');
  assert.equal(selectTemplate(v0, json(path.join(v0, 'tokenizer_config.json'))).name, 'vicuna-v0');
});

test("a chat_template in tokenizer_config.json beats the name; --template beats both", () => {
  const cfg = { bos_token: '<s>', eos_token: '</s>', chat_template: "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}" };
  const auto = selectTemplate('vicuna-7b-v1.1', cfg);
  assert.equal(auto.name, 'jinja');
  assert.match(auto.reason, /chat_template/);
  assert.equal(auto.template.render([{ role: 'user', content: 'hi' }], { addGenerationPrompt: true }), '<s>hi');
  const forced = selectTemplate('vicuna-7b-v1.1', cfg, { override: 'Stable-Vicuna' });
  assert.equal(forced.name, 'stable-vicuna');
  assert.match(forced.reason, /--template/);
  assert.equal(selectTemplate('x', cfg, { override: 'jinja' }).name, 'jinja');
  assert.throws(() => selectTemplate('x', undefined, { override: 'jinja' }), UsageError);
  assert.throws(() => selectTemplate('x', undefined, { override: 'chatml' }), (e: unknown) => e instanceof UsageError && /stable-vicuna, vicuna-v0/.test(e.message));
});
