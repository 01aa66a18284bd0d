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
