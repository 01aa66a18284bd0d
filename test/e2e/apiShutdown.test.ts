import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import OpenAI from 'openai';
import { LoadedModel } from '../../src/engine/loadedModel.js';
import { BatchingEngine } from '../../src/server/engine/batchingEngine.js';
import type { EngineLoader } from '../../src/server/engine/loadEngine.js';
import { LoadedModelEngine } from '../../src/server/engine/loadedModelEngine.js';
import { MODEL_ID, startServer, waitFor } from './serverHarness.js';

interface Watch {
  passes: number;
  /** passes that reached the model after it was disposed (a freed backend on a GPU) */
  late: number;
  disposed: boolean;
}

/** `qllama serve`'s loader (CPU), with the model's passes and its dispose watched. */
function watchedLoader(watch: Watch): EngineLoader {
  return async (spec) => {
    const loaded = await LoadedModel.load({ dir: spec.dir, backend: 'cpu', contextLength: spec.contextLength, template: spec.template, sequences: Math.max(1, spec.maxSequences ?? 1) });
    const m = loaded.model;
    const pass = (): void => {
      watch.passes++;
      if (watch.disposed) watch.late++;
    };
    const forward = m.forward.bind(m), forwardArgmax = m.forwardArgmax.bind(m), forwardSample = m.forwardSample.bind(m), decodeBatch = m.decodeBatch.bind(m), dispose = m.dispose.bind(m);
    m.forward = (t, p, s) => (pass(), forward(t, p, s));
    m.forwardArgmax = (t, p, s) => (pass(), forwardArgmax(t, p, s));
    m.forwardSample = (t, p, d, s) => (pass(), forwardSample(t, p, d, s));
    m.decodeBatch = (rows) => (pass(), decodeBatch(rows));
    m.dispose = () => {
      watch.disposed = true;
      dispose();
    };
    return m.sequences > 1 ? new BatchingEngine(spec.id, loaded) : new LoadedModelEngine(spec.id, loaded);
  };
}

/** Long enough to be in its prefill (several chunks) when the server goes down. */
const LONG_PROMPT = Array.from({ length: 56 }, (_, i) => `Line ${i + 1}: the old fox jumps over the lazy dog near the river.`).join('\n');

for (const maxConcurrency of [3, 1]) {
  test(`closing the server with runs in flight ends them cleanly (--max-concurrency ${maxConcurrency})`, async () => {
    const watch: Watch = { passes: 0, late: 0, disposed: false };
    const logged: string[] = [];
    const srv = await startServer({ maxConcurrency, maxQueued: 8, loader: watchedLoader(watch), log: (line) => logged.push(line) });
    const client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'x', maxRetries: 0 });
    let chunks = 0;
    const stream = async (prompt: string): Promise<unknown> => {
      try {
        const s = await client.completions.create(
          { model: MODEL_ID, prompt, max_tokens: 1500, temperature: 0, stream: true, ignore_eos: true } as OpenAI.CompletionCreateParamsStreaming,
        );
        for await (const chunk of s) if (chunk.choices.length > 0) chunks++;
        return null;
      } catch (err) {
        return err;
      }
    };
    // two decoding, then (with room for it) a long prompt in its prefill; with one slot, the others queue
    const runs = [stream('Once upon a time'), stream('In the morning')];
    await waitFor(() => chunks >= 6, 20_000, 'the runs to stream');
    runs.push(stream(LONG_PROMPT));
    await sleep(5);

    await srv.close();
    const ended = await Promise.race([Promise.all(runs), sleep(10_000, null, { ref: false })]);
    assert.ok(ended !== null, 'every client saw its stream end');
    assert.ok(ended.some((e) => e !== null), 'the streams in flight were cut, not finished');
    await sleep(50);
    assert.equal(watch.disposed, true, 'the model was disposed');
    assert.ok(watch.passes > 0);
    assert.equal(watch.late, 0, 'no pass reached the model after its dispose');
    assert.equal(srv.server.models.loadedEngine, null);
    assert.deepEqual(logged.filter((l) => /internal error/.test(l)), [], 'the runs ended without a server error');
  });
}
