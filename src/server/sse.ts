import type { ServerResponse } from 'node:http';

/**
 * Server-sent events on a raw response, the way OpenAI streams: `data: <json>\n\n` per event
 * and a final `data: [DONE]`. Writes honour backpressure so a slow reader slows generation
 * instead of growing the server's memory.
 */
export class SseWriter {
  private started = false;

  constructor(private readonly res: ServerResponse) {}

  /** True once the client has gone (or the response ended). */
  get closed(): boolean {
    return this.res.destroyed || this.res.writableEnded;
  }

  start(extraHeaders: Readonly<Record<string, string>> = {}): void {
    if (this.started) return;
    this.started = true;
    this.res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      // nginx and similar proxies buffer responses unless told not to
      'x-accel-buffering': 'no',
      ...extraHeaders,
    });
    this.res.flushHeaders();
  }

  async send(data: unknown): Promise<void> {
    await this.write(`data: ${JSON.stringify(data)}\n\n`);
  }

  /** A named event (model download progress uses `event: progress`). */
  async event(name: string, data: unknown): Promise<void> {
    await this.write(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  async done(): Promise<void> {
    await this.write('data: [DONE]\n\n');
    this.end();
  }

  end(): void {
    if (!this.closed) this.res.end();
  }

  private async write(chunk: string): Promise<void> {
    this.start();
    if (this.closed) return;
    if (!this.res.write(chunk)) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          this.res.off('drain', done);
          this.res.off('close', done);
          resolve();
        };
        this.res.on('drain', done);
        this.res.on('close', done);
      });
    }
  }
}
