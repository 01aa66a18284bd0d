import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidModelRefError } from '../../src/hub/errors.js';
import { globMatcher } from '../../src/hub/glob.js';
import { modelFolderName, parseModelRef } from '../../src/hub/modelRef.js';

test('user/repo[:branch] parses; folders follow text-generation-webui', () => {
  const main = parseModelRef('TheBloke/stable-vicuna-13B-GPTQ');
  assert.equal(main.repoId, 'TheBloke/stable-vicuna-13B-GPTQ');
  assert.equal(main.revision, 'main');
  assert.equal(modelFolderName(main), 'TheBloke_stable-vicuna-13B-GPTQ');
  const latest = parseModelRef('TheBloke/stable-vicuna-13B-GPTQ:latest');
  assert.equal(latest.revision, 'latest');
  assert.equal(modelFolderName(latest), 'TheBloke_stable-vicuna-13B-GPTQ_latest');
  assert.equal(modelFolderName(parseModelRef('a/b:refs/pr/1')), 'a_b_refs_pr_1');
});

test('invalid references are refused with a named error', () => {
  for (const bad of ['stable-vicuna', 'a/b/c', '/b', 'a/', 'a/b:', 'a/b:../x', 'a--b/c', 'a/b..c', 'a/-b', 'a b/c', 'a/b:x y', '../../etc/passwd']) {
    assert.throws(() => parseModelRef(bad), InvalidModelRefError, bad);
  }
});

test('globs: * within a segment, ** across, {a,b}, base-name matching without /', () => {
  const m = globMatcher(['*.safetensors', 'tok*.{json,model}', 'sub/**/x?.bin']);
  assert.ok(m('model.safetensors'));
  assert.ok(m('deep/dir/model.safetensors'));
  assert.ok(m('tokenizer.json') && m('tokenizer.model'));
  assert.ok(!m('tokenizer.txt'));
  assert.ok(m('sub/x1.bin') && m('sub/a/b/x2.bin'));
  assert.ok(!m('other/x1.bin') && !m('model.safetensors.partial'));
});
