/**
 * The server side of `npm run bench:server`: the real QllamaServer (the factory `qllama serve`
 * and the e2e tests use) on 127.0.0.1:0 with the embedded tiny-vicuna-4k on the CPU backend,
 * run as a child process so the load generator's own allocations do not blur its memory.
 *
 *   node --expose-gc dist/bench/serverLoadServer.js [--max-queue N] [--max-concurrency N]
 *
 * Talks to its parent over IPC: sends {type:'ready', url} once listening; answers
 * {type:'memory'} with process.memoryUsage() taken after two full GCs (when --expose-gc);
 * {type:'shutdown'} closes the server and exits. Server log lines go to stderr.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { QllamaServer } from '../src/server/app.js';
import { loadedModelLoader } from '../src/server/engine/loadEngine.js';

export interface MemorySample {
  readonly rss: number;
  readonly heapUsed: number;
  readonly heapTotal: number;
  readonly external: number;
  readonly arrayBuffers: number;
  /** True when the numbers were taken after a forced full GC. */
  readonly afterGc: boolean;
}

export type ChildMessage = { readonly type: 'ready'; readonly url: string } | ({ readonly type: 'memory' } & MemorySample);
export type ParentMessage = { readonly type: 'memory' } | { readonly type: 'shutdown' };

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

function sample(): MemorySample {
  const collect = globalThis.gc;
  if (collect !== undefined) {
    collect();
    collect(); // a second pass collects what the first one's finalizers released
  }
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers, afterGc: collect !== undefined };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { 'max-queue': { type: 'string', default: '32' }, 'max-concurrency': { type: 'string', default: '1' } } });
  const log = (line: string): void => { process.stderr.write(`${line}\n`); };
  const server = await QllamaServer.create({
    modelsDir: path.join(REPO_ROOT, 'models'),
    loader: loadedModelLoader('cpu', log),
    maxQueued: Number(values['max-queue']),
    maxConcurrency: Number(values['max-concurrency']),
    webRoot: null,
    log,
  });
  const id = server.models.addDir(path.join(REPO_ROOT, 'models', 'tiny-vicuna-4k'));
  await server.models.load({ id });
  const url = await server.listen('127.0.0.1', 0);
  const send = (m: ChildMessage): void => { process.send?.(m); };
  process.on('message', (m: ParentMessage) => {
    if (m.type === 'memory') send({ type: 'memory', ...sample() });
    else if (m.type === 'shutdown') void server.close().then(() => process.exit(0));
  });
  // The parent went away without saying shutdown: do not outlive it.
  process.on('disconnect', () => { void server.close().then(() => process.exit(0)); });
  send({ type: 'ready', url });
}

main().catch((err: unknown) => {
  process.stderr.write(`serverLoadServer: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
