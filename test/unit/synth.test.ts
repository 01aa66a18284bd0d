import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { SafetensorsFile } from '../../src/formats/safetensors.js';
import { synthesize } from '../../src/synth/synth.js';
import { LoadedModel } from '../../src/engine/loadedModel.js';
import { generateAll } from '../../src/generate/generator.js';
import { FIXTURES } from '../support/paths.js';
import { tempDir } from './formatsSupport.js';

const SHAPE = { hidden: 256, ffn: 512, layers: 2, heads: 2, vocab: 4096 };

/** g_idx bytes of each named projection of layer `l`, by short name (q, k, v, o, gate, up, down). */
function gIdx(st: SafetensorsFile, l: number): Record<string, Buffer> {
  const names: Record<string, string> = {
    q: 'self_attn.q_proj', k: 'self_attn.k_proj', v: 'self_attn.v_proj', o: 'self_attn.o_proj',
    gate: 'mlp.gate_proj', up: 'mlp.up_proj', down: 'mlp.down_proj',
  };
  return Object.fromEntries(Object.entries(names).map(([k, n]) => [k, st.read(`model.layers.${l}.${n}.g_idx`)]));
}

test('GPTQ-for-LLaMa act-order files share one column order across q/k/v and across gate/up (the reference fixture)', () => {
  const dir = path.join(FIXTURES, 'tiny-vicuna-4k', 'gptq-4bit-128g-actorder');
  const file = readdirSync(dir).find((f) => f.endsWith('.safetensors'));
  assert.ok(file, `no safetensors file in ${dir}`);
  const st = SafetensorsFile.open(path.join(dir, file));
  try {
    const g = gIdx(st, 0);
    assert.ok(g.q.equals(g.k) && g.q.equals(g.v), 'q/k/v g_idx differ');
    assert.ok(g.gate.equals(g.up), 'gate/up g_idx differ');
    assert.ok(!g.q.equals(g.o), 'q and o share g_idx: the check would not tell shared orders from identity');
  } finally {
    st.close();
  }
});

test('synth --act-order draws its column orders as GPTQ-for-LLaMa leaves them: shared by q/k/v and by gate/up only', async () => {
  const out = tempDir('synth-order');
  try {
    await synthesize({ shape: SHAPE, bits: 4, groupSize: 64, actOrder: true, out, seed: 5 });
    const st = SafetensorsFile.open(path.join(out, 'model.safetensors'));
    try {
      for (let l = 0; l < SHAPE.layers; l++) {
        const g = gIdx(st, l);
        assert.ok(g.q.equals(g.k) && g.q.equals(g.v), `layer ${l}: q/k/v g_idx differ`);
        assert.ok(g.gate.equals(g.up), `layer ${l}: gate/up g_idx differ`);
        assert.ok(!g.q.equals(g.o) && !g.q.equals(g.gate), `layer ${l}: unrelated inputs share one order`);
        const groups = new Int32Array(g.q.buffer, g.q.byteOffset, g.q.length / 4);
        const sorted = Int32Array.from(groups).sort();
        assert.ok(!groups.every((v, i) => v === sorted[i]), `layer ${l}: q's g_idx is not shuffled`);
        assert.deepEqual(Array.from(new Set(sorted)), [0, 1, 2, 3], 'every group of 64 is present');
      }
    } finally {
      st.close();
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('a synthetic model whose vocabulary is larger than its tokenizer: lm_head rows past the tokenizer are zero, greedy text stays inside it, the load warns', async () => {
  const out = tempDir('synth-vocab');
  const lines: string[] = [];
  try {
    const shape = { ...SHAPE, vocab: 5000 }; // the embedded tokenizer has 4096 pieces
    await synthesize({ shape, bits: 4, groupSize: 64, actOrder: false, out, seed: 3 });
    const st = SafetensorsFile.open(path.join(out, 'model.safetensors'));
    try {
      const head = new Uint16Array(new Uint8Array(st.read('lm_head.weight')).buffer);
      assert.ok(head.subarray(4096 * shape.hidden).every((h) => h === 0), 'rows 4096.. of lm_head are zero');
      assert.ok(head.subarray(0, 4096 * shape.hidden).some((h) => h !== 0), 'rows below 4096 are random');
    } finally {
      st.close();
    }
    await using loaded = await LoadedModel.load({ dir: out, backend: 'cpu', threads: 1, log: (l) => lines.push(l) });
    assert.ok(lines.some((l) => /warning: the model has 5000 token ids but its tokenizer 4096/.test(l)), lines.join('\n'));
    const { tokenIds, text } = await generateAll(loaded.model, loaded.tokenizer, {
      promptIds: loaded.tokenizer.encode('Hello', { addBos: true }), maxNewTokens: 6, stopAtEos: false, sampling: { temperature: 0 },
    });
    assert.equal(tokenIds.length, 6);
    assert.ok(tokenIds.every((id) => id < 4096), `greedy ids ${tokenIds}`);
    assert.equal(typeof text, 'string');
    // an id past the tokenizer's pieces renders nothing instead of throwing
    assert.equal(loaded.tokenizer.decode([4500]), '');
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('a synthetic model with grouped-query attention: k/v projections of kvHeads heads, the config says so, and the CPU model decodes it', async () => {
  const out = tempDir('synth-gqa');
  try {
    const shape = { hidden: 256, ffn: 512, layers: 1, heads: 4, kvHeads: 2, vocab: 4096 };
    await synthesize({ shape, bits: 4, groupSize: 64, actOrder: true, out, seed: 7 });
    const config = JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8')) as { num_key_value_heads: number; num_attention_heads: number };
    assert.equal(config.num_attention_heads, 4);
    assert.equal(config.num_key_value_heads, 2);
    const st = SafetensorsFile.open(path.join(out, 'model.safetensors'));
    try {
      // qweight [K / 8, N]: q has 4 heads of 64, k and v 2
      assert.deepEqual(st.entry('model.layers.0.self_attn.q_proj.qweight').shape, [32, 256]);
      assert.deepEqual(st.entry('model.layers.0.self_attn.k_proj.qweight').shape, [32, 128]);
      assert.deepEqual(st.entry('model.layers.0.self_attn.v_proj.scales').shape, [4, 128]);
    } finally {
      st.close();
    }
    await using loaded = await LoadedModel.load({ dir: out, backend: 'cpu', threads: 1, log: () => {} });
    const { tokenIds } = await generateAll(loaded.model, loaded.tokenizer, {
      promptIds: loaded.tokenizer.encode('Hello', { addBos: true }), maxNewTokens: 4, stopAtEos: false, sampling: { temperature: 0 },
    });
    assert.equal(tokenIds.length, 4);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
