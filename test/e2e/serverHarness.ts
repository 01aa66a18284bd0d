import { QllamaServer, type ServerOptions } from '../../src/server/app.js';
import { loadedModelLoader, type EngineLoader } from '../../src/server/engine/loadEngine.js';
import type { InferenceEngine } from '../../src/server/engine/inferenceEngine.js';
import type { GeneratedToken, GenerationRequest, GenerationResult } from '../../src/generate/generator.js';
import { EMBEDDED_MODEL, REPO_ROOT } from '../support/paths.js';
import path from 'node:path';

export const MODEL_ID = 'tiny-vicuna-4k';

export interface RunningServer {
  readonly url: string;
  readonly server: QllamaServer;
  close(): Promise<void>;
}

/**
 * A real `qllama serve` in this process on 127.0.0.1:0, CPU backend, with the embedded
 * tiny-vicuna-4k loaded (template stable-vicuna, as the CLI picks for it).
 */
export async function startServer(options: Partial<ServerOptions> & { load?: boolean } = {}): Promise<RunningServer> {
  const server = await QllamaServer.create({
    modelsDir: path.join(REPO_ROOT, 'models'),
    loader: loadedModelLoader('cpu', () => {}),
    webRoot: path.join(REPO_ROOT, 'web', 'dist'),
    ...options,
  });
  if (options.load !== false) {
    server.models.addDir(EMBEDDED_MODEL);
    await server.models.load({ id: MODEL_ID });
  }
  const url = await server.listen('127.0.0.1', 0);
  return { url, server, close: () => server.close() };
}

/** Poll `check` every 20 ms until it holds (or fail after `ms`). */
export async function waitFor(check: () => Promise<boolean> | boolean, ms = 10_000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

export interface Health {
  readonly status: string;
  readonly model: string | null;
  readonly running: number;
  readonly queued: number;
}

export async function health(url: string): Promise<Health> {
  const res = await fetch(`${url}/health`);
  return (await res.json()) as Health;
}

/**
 * The real engine with a pause before each token, so a browser test can watch a reply grow
 * and press Stop mid-reply on any machine (the tiny model alone may finish in a blink).
 */
export function slowLoader(msPerToken: number): EngineLoader {
  const real = loadedModelLoader('cpu', () => {});
  return async (spec) => new SlowEngine(await real(spec), msPerToken);
}

class SlowEngine implements InferenceEngine {
  constructor(
    private readonly inner: InferenceEngine,
    private readonly msPerToken: number,
  ) {}

  get id(): string { return this.inner.id; }
  get contextLength(): number { return this.inner.contextLength; }
  get vocabSize(): number { return this.inner.vocabSize; }
  get codec(): InferenceEngine['codec'] { return this.inner.codec; }
  get template(): InferenceEngine['template'] { return this.inner.template; }
  get maxSequences(): number { return this.inner.maxSequences; }

  async *run(request: GenerationRequest): AsyncGenerator<GeneratedToken, GenerationResult | undefined, undefined> {
    const it = this.inner.run(request);
    try {
      for (;;) {
        await new Promise((r) => setTimeout(r, this.msPerToken));
        const step = await it.next();
        if (step.done === true) return step.value;
        yield step.value;
      }
    } finally {
      await it.return(undefined);
    }
  }

  dispose(): void {
    this.inner.dispose();
  }
}
