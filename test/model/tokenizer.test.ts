// The tokenizers of both fixtures against their independent references (SentencePiece itself).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Tokenizer } from '../../src/tokenizer/index.js';
import { DATA, FIXTURES } from '../support/paths.js';

interface Reference {
  tokenizer_cases: { text: string; ids: number[] }[];
  reference_generations: Record<string, Record<string, { input_ids: number[] }>>;
}

for (const fixture of ['tiny-vicuna', 'tiny-vicuna-4k']) {
  const dir = path.join(FIXTURES, fixture);
  const load = async (): Promise<{ tok: Tokenizer; ref: Reference }> => ({
    tok: await Tokenizer.fromModelDir(path.join(dir, 'fp16')),
    ref: JSON.parse(await readFile(path.join(dir, 'reference.json'), 'utf8')) as Reference,
  });

  test(`${fixture}: tokenizer_cases encode exactly (no BOS)`, async () => {
    const { tok, ref } = await load();
    assert.ok(ref.tokenizer_cases.length > 0);
    for (const c of ref.tokenizer_cases) assert.deepEqual(tok.encode(c.text), c.ids, JSON.stringify(c.text));
  });

  test(`${fixture}: reference prompts encode to input_ids with BOS, and decode back`, async () => {
    const { tok, ref } = await load();
    for (const [variant, prompts] of Object.entries(ref.reference_generations)) {
      for (const [prompt, gen] of Object.entries(prompts)) {
        assert.deepEqual(tok.encode(prompt, { addBos: true }), gen.input_ids, `${variant}: ${JSON.stringify(prompt)}`);
        assert.equal(tok.decode(gen.input_ids), prompt);
      }
    }
  });

  test(`${fixture}: special ids and vocabulary size`, async () => {
    const { tok } = await load();
    assert.deepEqual([tok.unkId, tok.bosId, tok.eosId], [0, 1, 2]);
    assert.equal(tok.vocabSize, fixture === 'tiny-vicuna' ? 32000 : 4096);
    assert.equal(tok.idToPiece(1), '<s>');
    assert.ok(tok.isSpecial(2));
    assert.ok(!tok.isSpecial(tok.encode('Hello')[0]));
  });
}

test('tiny-vicuna: whole perplexity corpora encode to the reference token counts', async () => {
  const dir = path.join(FIXTURES, 'tiny-vicuna');
  const tok = await Tokenizer.fromModelDir(path.join(dir, 'fp16'));
  const ref = JSON.parse(await readFile(path.join(dir, 'reference.json'), 'utf8')) as {
    perplexity: { token_counts: Record<string, number> };
  };
  const wikitext = await readFile(path.join(DATA, 'wikitext-2', 'wikitext2_test_gptq_join_lf.txt'), 'utf8');
  assert.equal(tok.encode(wikitext, { addBos: true }).length, ref.perplexity.token_counts.wikitext2);
  const c4 = (await readFile(path.join(DATA, 'c4', 'c4_sample.jsonl'), 'utf8'))
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => (JSON.parse(line) as { text: string }).text)
    .slice(900, 1000)
    .join('\n\n');
  assert.equal(tok.encode(c4, { addBos: true }).length, ref.perplexity.token_counts.c4_docs900to999);
});
