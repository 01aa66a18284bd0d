import path from 'node:path';
import { parseBackendKind } from '../../backends/select.js';
import { resolveModelRef } from '../../hub/resolve.js';
import { QllamaServer } from '../../server/app.js';
import { loadedModelLoader } from '../../server/engine/loadEngine.js';
import { createHubDownloader } from '../../server/models/hubDownloader.js';
import { defineCommand, numberOpt, stringOpt } from '../command.js';
import { logToStderr } from '../loadFromFlags.js';

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1']);

export const serveCommand = defineCommand({
  name: 'serve',
  summary: 'Serve an OpenAI-compatible API (/v1/chat/completions, /v1/completions) and the web UI.',
  usage: 'qllama serve [--model <dir|user/repo[:branch]>] [--models-dir ./models] [--host 127.0.0.1] [--port 5000] [--api-key KEY] [--backend auto|cpu|cuda] [--ctx N] [--max-concurrency N] [--max-queue N]',
  options: {
    model: { type: 'string', short: 'm', value: 'dir|user/repo[:branch]', description: 'model to load at start: a folder, or a Hub reference (downloaded into --models-dir on first use); default: none, pick one in the web UI' },
    'models-dir': { type: 'string', value: 'dir', description: 'folder of model folders the Model tab lists and downloads into', default: './models' },
    host: { type: 'string', value: 'addr', description: 'address to bind; anything but loopback exposes the server to the network', default: '127.0.0.1' },
    port: { type: 'string', value: 'N', description: 'TCP port (0 = any free port)', default: '5000' },
    'api-key': { type: 'string', value: 'KEY', description: 'require "Authorization: Bearer KEY" on /v1 and /api (or set QLLAMA_API_KEY)' },
    backend: { type: 'string', value: 'auto|cpu|cuda', description: 'compute backend', default: 'auto' },
    ctx: { type: 'string', value: 'N', description: 'context length (default: the model\'s max_position_embeddings)' },
    template: { type: 'string', value: 'name', description: 'chat template for --model (default: picked from the model)' },
    'max-concurrency': { type: 'string', value: 'N', description: 'generations at once; above 1 they are batched: each decode step feeds every running sequence its next token at once (one batched pass; on CUDA up to 2 sequences replay their captured graphs in turn), and each sequence holds its own KV cache, so KV memory grows N-fold', default: '1' },
    'max-queue': { type: 'string', value: 'N', description: 'requests that may wait; more get 429', default: '32' },
    'max-body': { type: 'string', value: 'bytes', description: 'largest request body', default: '1048576' },
  },
  details: 'example: qllama serve --model models/tiny-vicuna-4k --port 5000, then open http://127.0.0.1:5000/ or point an OpenAI client at http://127.0.0.1:5000/v1',
  async run(values) {
    const host = stringOpt(values, 'host') ?? '127.0.0.1';
    const port = numberOpt(values, 'port', { min: 0, max: 65535, integer: true }) ?? 5000;
    const modelsDir = path.resolve(stringOpt(values, 'models-dir') ?? './models');
    const apiKey = stringOpt(values, 'api-key') ?? process.env.QLLAMA_API_KEY;
    const server = await QllamaServer.create({
      modelsDir,
      apiKey,
      loader: loadedModelLoader(parseBackendKind(stringOpt(values, 'backend')), logToStderr),
      maxConcurrency: numberOpt(values, 'max-concurrency', { min: 1, integer: true }) ?? 1,
      maxQueued: numberOpt(values, 'max-queue', { min: 0, integer: true }) ?? 32,
      bodyLimit: numberOpt(values, 'max-body', { min: 1024, integer: true }) ?? 1024 * 1024,
      downloader: createHubDownloader(),
      log: logToStderr,
    });
    const modelArg = stringOpt(values, 'model');
    if (modelArg !== undefined) {
      // a folder, or user/repo[:branch] in --models-dir, downloaded first if missing
      const id = server.models.addDir(await resolveModelRef(modelArg, modelsDir, { log: logToStderr }));
      await server.models.load({ id, template: stringOpt(values, 'template'), contextLength: numberOpt(values, 'ctx', { min: 16, integer: true }) });
    }
    const url = await server.listen(host, port);
    if (!LOOPBACK.has(host)) logToStderr(`warning: listening on ${host}, reachable from the network${apiKey ? '' : ' without --api-key'}`);
    logToStderr(`qllama serve: web UI ${url}/  ·  OpenAI API ${url}/v1  ·  models from ${modelsDir}`);
    await untilSignal();
    logToStderr('shutting down');
    await server.close();
    return 0;
  },
});

function untilSignal(): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      process.off('SIGINT', done);
      process.off('SIGTERM', done);
      resolve();
    };
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
  });
}
