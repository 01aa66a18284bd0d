import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ModelDownloader } from '../../src/server/models/downloader.js';
import { MODEL_ID, startServer, type RunningServer } from './serverHarness.js';

/** A downloader that "downloads" 3 chunks of one file, so progress events can be checked offline. */
const fakeDownloader: ModelDownloader = {
  async listFiles() {
    return [{ path: 'config.json', size: 10 }, { path: 'model.safetensors', size: 300 }];
  },
  async download(ref, options) {
    for (let i = 1; i <= 3; i++) {
      await new Promise((r) => setTimeout(r, 20));
      options.onProgress({ file: 'model.safetensors', fileBytes: i * 100, fileTotal: 300, bytes: i * 100, total: 300 });
    }
    return { dir: `${options.modelsDir}/${ref.replace('/', '_')}` };
  },
};

let srv: RunningServer;
before(async () => { srv = await startServer({ downloader: fakeDownloader }); });
after(async () => srv.close());

const post = (path: string, body: unknown): Promise<Response> =>
  fetch(`${srv.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

interface ModelsReply {
  current: { id: string } | null;
  models: { id: string; embedded: boolean; settings?: { bits: number; groupSize: number; actOrder: boolean; template: string; format: string } }[];
}

test('GET /api/models lists the embedded model with its detected GPTQ settings', async () => {
  const reply = (await (await fetch(`${srv.url}/api/models`)).json()) as ModelsReply;
  const tiny = reply.models.find((m) => m.id === MODEL_ID);
  assert.ok(tiny?.settings, JSON.stringify(reply));
  assert.deepEqual(
    { format: tiny.settings.format, bits: tiny.settings.bits, groupSize: tiny.settings.groupSize, actOrder: tiny.settings.actOrder, template: tiny.settings.template },
    { format: 'gptq', bits: 4, groupSize: 128, actOrder: true, template: 'stable-vicuna' },
  );
  assert.equal(reply.current?.id, MODEL_ID);
});

test('load errors: unknown id 404, unknown template 400', async () => {
  assert.equal((await post('/api/models/load', { id: 'nope' })).status, 404);
  const bad = await post('/api/models/load', { id: MODEL_ID, template: 'klingon' });
  assert.equal(bad.status, 400);
  assert.match(((await bad.json()) as { error: { message: string } }).error.message, /stable-vicuna/);
});

test('unload, then load again with a smaller context; requests follow', async () => {
  assert.equal((await post('/api/models/unload', {})).status, 200);
  const none = (await (await fetch(`${srv.url}/v1/models`)).json()) as { data: unknown[] };
  assert.deepEqual(none.data, []);
  assert.equal((await post('/v1/completions', { model: MODEL_ID, prompt: 'hi', max_tokens: 2 })).status, 503);

  const loaded = await post('/api/models/load', { id: MODEL_ID, context_length: 128 });
  assert.equal(loaded.status, 200);
  const cur = ((await loaded.json()) as { current: { contextLength: number; template: string } }).current;
  assert.equal(cur.contextLength, 128);
  assert.equal(cur.template, 'stable-vicuna');
  const over = await post('/v1/completions', { model: MODEL_ID, prompt: 'hi', max_tokens: 200 });
  assert.equal(over.status, 400, 'the new context length is enforced');
  assert.equal((await post('/v1/completions', { model: MODEL_ID, prompt: 'hi', max_tokens: 2 })).status, 200);
});

test('downloads: a bad reference is 400; a job streams progress events and ends done', async () => {
  assert.equal((await post('/api/downloads', { ref: 'not a ref' })).status, 400);
  const files = (await (await post('/api/hub/files', { ref: 'TheBloke/stable-vicuna-13B-GPTQ:latest' })).json()) as { files: { path: string }[] };
  assert.deepEqual(files.files.map((f) => f.path), ['config.json', 'model.safetensors']);

  const started = await post('/api/downloads', { ref: 'TheBloke/stable-vicuna-13B-GPTQ:latest', files: ['model.safetensors'] });
  assert.equal(started.status, 202);
  const { job } = (await started.json()) as { job: { id: string } };
  const events = await (await fetch(`${srv.url}/api/downloads/${job.id}/events`)).text();
  const names = [...events.matchAll(/^event: (\w+)$/gm)].map((m) => m[1]);
  assert.ok(names.includes('progress'), events);
  assert.equal(names[names.length - 1], 'end');
  const end = JSON.parse(events.trim().split('\n').pop()?.replace(/^data: /, '') ?? '{}') as { status: string; progress: { bytes: number; total: number } };
  assert.equal(end.status, 'done');
  assert.deepEqual([end.progress.bytes, end.progress.total], [300, 300]);
});

test('GET /metrics is Prometheus text with request, token, queue and latency series', async () => {
  const res = await fetch(`${srv.url}/metrics`);
  assert.match(res.headers.get('content-type') ?? '', /text\/plain/);
  const text = await res.text();
  for (const name of ['qllama_http_requests_total', 'qllama_completion_tokens_total', 'qllama_prompt_tokens_total', 'qllama_generation_tokens_per_second',
    'qllama_queue_depth', 'qllama_running_requests', 'qllama_http_request_duration_seconds_bucket', 'qllama_time_to_first_token_seconds_bucket']) {
    assert.ok(text.includes(name), `missing ${name}`);
  }
});

test('GET / serves the web UI', async () => {
  const res = await fetch(`${srv.url}/`);
  assert.equal(res.status, 200);
  const html = await res.text();
  assert.ok(html.includes('<div id="app">') || html.includes('npm run build:web'), html.slice(0, 200));
});
