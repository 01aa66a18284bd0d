/**
 * decodeBatch with one row on a backend with graphs takes the one-sequence path (its slot's captured decode
 * graph) instead of the eager batched pass, and answers as the batched pass does. The CPU backend has no graphs,
 * so a subclass records runGraph calls and runs the recorded step as it is.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PlainCpuBackend } from '../../src/backends/cpu/cpuBackend.js';
import type { DecodeRow, RowPick } from '../../src/model/batch.js';
import { LlamaModel } from '../../src/model/llama.js';
import { EMBEDDED_MODEL } from '../support/paths.js';

class GraphRecordingBackend extends PlainCpuBackend {
  readonly graphKeys: string[] = [];
  runGraph(key: string, _step: { readonly startPos: number; readonly ids: Int32Array }, record: () => void): void {
    this.graphKeys.push(key);
    record();
  }
}

test('decodeBatch: a lone row replays its slot\'s decode graph, with the batched pass\'s answer for every pick', async () => {
  const graphs = new GraphRecordingBackend();
  const model = await LlamaModel.create(EMBEDDED_MODEL, { backend: graphs, sequences: 3, contextLength: 32 });
  const twin = await LlamaModel.create(EMBEDDED_MODEL, { backend: new PlainCpuBackend(), sequences: 3, contextLength: 32 });
  try {
    const prompt = [1, 835, 5618, 29901].map((id) => id % model.vocabSize);
    const first = await model.forwardArgmax(prompt, 0, 2);
    assert.equal(await twin.forwardArgmax(prompt, 0, 2), first);
    const picks: RowPick[] = [{ kind: 'argmax' }, { kind: 'logits' }, { kind: 'sample', sampling: { temperature: 0.7, topK: 0, topP: 1, minP: 0, u: 0.5 } }];
    let token = first;
    for (const [i, pick] of picks.entries()) {
      const row: DecodeRow = { slot: 2, token, pos: prompt.length + i, pick };
      graphs.graphKeys.length = 0;
      const [got] = await model.decodeBatch([row]);
      const [want] = await twin.decodeBatch([row]);
      assert.deepEqual(graphs.graphKeys, ['decode:2'], `${pick.kind}: one graph replay of slot 2's decode`);
      if (typeof want === 'number') assert.equal(got, want, pick.kind);
      else {
        assert.ok(got instanceof Float32Array, `${pick.kind}: the logits row, as the batched pass returns it here`);
        const err = Math.max(...want.map((v, j) => Math.abs(v - got[j])));
        assert.ok(err < 1e-3, `${pick.kind}: logits within 1e-3 of the batched pass's (max diff ${err})`);
      }
      token = typeof want === 'number' ? want : want.indexOf(Math.max(...want));
    }
    // two rows: the batched pass, no graph
    graphs.graphKeys.length = 0;
    await model.forwardArgmax(prompt, 0, 0);
    await model.decodeBatch([{ slot: 0, token: first, pos: prompt.length, pick: { kind: 'argmax' } }, { slot: 2, token, pos: prompt.length + 3, pick: { kind: 'argmax' } }]);
    assert.deepEqual(graphs.graphKeys, []);
  } finally {
    model.dispose();
    twin.dispose();
  }
});

class TwoRowGraphBackend extends GraphRecordingBackend {
  readonly decodeRowsByGraph = 2;
}

test("decodeBatch: up to decodeRowsByGraph rows replay their slots' graphs one after another, with the batched pass's answers; more rows take the batched pass", async () => {
  const graphs = new TwoRowGraphBackend();
  const model = await LlamaModel.create(EMBEDDED_MODEL, { backend: graphs, sequences: 3, contextLength: 32 });
  const twin = await LlamaModel.create(EMBEDDED_MODEL, { backend: new PlainCpuBackend(), sequences: 3, contextLength: 32 });
  try {
    const prompts = [[1, 835, 5618, 29901], [1, 3492, 526], [1, 15043, 29991, 1724, 338]].map((p) => p.map((id) => id % model.vocabSize));
    const next: number[] = [];
    for (const [slot, p] of prompts.entries()) {
      next.push(await model.forwardArgmax(p, 0, slot));
      assert.equal(await twin.forwardArgmax(p, 0, slot), next[slot]);
    }
    const sample = { kind: 'sample', sampling: { temperature: 0.7, topK: 0, topP: 1, minP: 0, u: 0.25 } } as const;
    const two: DecodeRow[] = [
      { slot: 2, token: next[2], pos: prompts[2].length, pick: { kind: 'argmax' } },
      { slot: 0, token: next[0], pos: prompts[0].length, pick: sample },
    ];
    graphs.graphKeys.length = 0;
    const got = await model.decodeBatch(two);
    assert.deepEqual(graphs.graphKeys, ['decode:2', 'decode'], 'one replay per row, in row order');
    assert.deepEqual(got, await twin.decodeBatch(two));
    const three: DecodeRow[] = prompts.map((p, slot) => ({ slot, token: next[slot], pos: p.length + (slot === 1 ? 0 : 1), pick: { kind: 'argmax' } }));
    graphs.graphKeys.length = 0;
    assert.deepEqual(await model.decodeBatch(three), await twin.decodeBatch(three));
    assert.deepEqual(graphs.graphKeys, [], 'three rows: the batched pass');
  } finally {
    model.dispose();
    twin.dispose();
  }
});
