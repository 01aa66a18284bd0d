import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, copyFileSync, readdirSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT, FIXTURES, EMBEDDED_MODEL } from '../support/paths.js';
import { Tokenizer } from '../../src/tokenizer/index.js';
import { loadReference, firstNearTie } from '../support/reference.js';

/** The CLI as users run it: a real process, real files, exit codes and stderr. */
const CLI = path.join(REPO_ROOT, 'dist', 'src', 'cli', 'cli.js');

function qllama(args: string[], input?: string): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { input, encoding: 'utf8' });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

test('generate --json reproduces the reference greedy ids of the fixture (act-order file)', () => {
  const variant = 'gptq-4bit-128g-actorder';
  const ref = loadReference('tiny-vicuna-4k').reference_generations[variant];
  const [prompt, gen] = Object.entries(ref)[0];
  const steps = firstNearTie(gen.top2_gaps);
  const r = qllama(['generate', '--model', path.join(FIXTURES, 'tiny-vicuna-4k', variant), '--backend', 'cpu',
    '--prompt', prompt, '--temperature', '0', '--max-tokens', String(steps), '--json']);
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { token_ids: number[]; prompt_token_ids: number[]; finish_reason: string; text: string };
  assert.deepEqual(out.prompt_token_ids, gen.input_ids);
  assert.deepEqual(out.token_ids, gen.greedy_ids.slice(0, steps));
  assert.equal(out.finish_reason, 'length');
});

test('generate: prompt + completion reads as the decode of all ids (the first token keeps its space)', async () => {
  const prompt = 'The history of the city began in';
  const r = qllama(['generate', '--backend', 'cpu', '--prompt', prompt, '--temperature', '0', '--max-tokens', '8', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { token_ids: number[]; prompt_token_ids: number[]; text: string };
  const tokenizer = await Tokenizer.fromModelDir(EMBEDDED_MODEL);
  assert.equal(prompt + out.text, tokenizer.decode([...out.prompt_token_ids, ...out.token_ids]));
  assert.ok(out.text.startsWith(' '), JSON.stringify(out.text));
});

test('generate stops at "### Human:" and never prints it', () => {
  const r = qllama(['generate', '--backend', 'cpu', '--prompt', '### Human: What is the capital of France?\n### Assistant:',
    '--temperature', '0', '--max-tokens', '60', '--stop', '### Human:', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { text: string; finish_reason: string };
  assert.equal(out.finish_reason, 'stop');
  assert.ok(!out.text.includes('### Human'), out.text);
  assert.ok(out.text.length > 0);
});

test('chat over a pipe answers each line in the StableVicuna format without the next turn', () => {
  const r = qllama(['chat', '--backend', 'cpu', '--temperature', '0', '--max-tokens', '60'], 'What is the capital of France?\n');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /template stable-vicuna/);
  assert.ok(r.stdout.trim().length > 0);
  assert.ok(!r.stdout.includes('### Human'), r.stdout);
});

test('info prints the detected GPTQ settings', () => {
  const r = qllama(['info', path.join(FIXTURES, 'tiny-vicuna', 'gptq-4bit-128g'), '--json']);
  assert.equal(r.code, 0, r.stderr);
  const info = JSON.parse(r.stdout) as Record<string, unknown>;
  assert.equal(info.format, 'gptq');
  assert.equal(info.bits, 4);
  assert.equal(info.groupSize, 128);
  assert.equal(info.actOrder, false);
  assert.equal(info.vocab, 32000);
  assert.equal(info.layers, 4);
});

test('eval ppl --json scores the requested windows of the shipped model', () => {
  // The full 40-window check is in test/model/perplexity.test.ts; this one exercises the command.
  const r = qllama(['eval', 'ppl', '--backend', 'cpu', '--dataset', path.join(REPO_ROOT, '..', 'shared', 'data', 'wikitext-2', 'wikitext2_test_gptq_join_lf.txt'),
    '--seqlen', '256', '--max-windows', '2', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { ppl: number; windows: number; tokens: number };
  assert.equal(out.windows, 2);
  assert.equal(out.tokens, 2 * 255);
  assert.ok(out.ppl > 1 && out.ppl < 10000);
});

// --- bad inputs: a named error, a non-zero exit, no stack trace --------------------------------

function assertUserError(r: { code: number; stderr: string }, name: string, pattern?: RegExp): void {
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, new RegExp(`qllama: ${name}: `));
  assert.ok(!/\n\s+at /.test(r.stderr), `stack trace printed:\n${r.stderr}`);
  if (pattern) assert.match(r.stderr, pattern);
}

test('unknown flag and unknown command exit 2 with usage', () => {
  const r = qllama(['generate', '--prompt', 'x', '--bogus']);
  assertUserError(r, 'UsageError', /--bogus/);
  assert.equal(r.code, 2);
  const c = qllama(['frobnicate']);
  assert.equal(c.code, 2);
  assert.match(c.stderr, /unknown command/);
});

test('bad numeric flag names the flag', () => {
  assertUserError(qllama(['generate', '--prompt', 'x', '--top-p', 'lots']), 'UsageError', /--top-p/);
});

test('prompt longer than the context is a ContextOverflowError', () => {
  assertUserError(qllama(['generate', '--backend', 'cpu', '--ctx', '16', '--prompt', 'word '.repeat(40)]), 'ContextOverflowError', /context/);
});

test('missing model folder, missing config, truncated weights: named errors', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'qllama-cli-'));
  try {
    assertUserError(qllama(['info', path.join(dir, 'nope')]), 'ModelFolderNotFoundError', /does not exist/);
    const src = path.join(FIXTURES, 'tiny-vicuna-4k', 'gptq-4bit-128g');
    const model = path.join(dir, 'model');
    mkdirSync(model);
    for (const f of readdirSync(src)) if (f !== 'config.json') copyFileSync(path.join(src, f), path.join(model, f));
    assertUserError(qllama(['info', model]), 'MissingConfigError', /config\.json/);
    copyFileSync(path.join(src, 'config.json'), path.join(model, 'config.json'));
    const weights = readdirSync(model).find((f) => f.endsWith('.safetensors'));
    assert.ok(weights);
    writeFileSync(path.join(model, weights), Buffer.alloc(4096, 7)); // garbage header length
    assertUserError(qllama(['generate', '--backend', 'cpu', '--model', model, '--prompt', 'hi']), '\\w*Safetensors\\w*Error', /download it again/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
