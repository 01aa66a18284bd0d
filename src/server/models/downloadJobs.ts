import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import { ApiError } from '../apiError.js';
import type { DownloadProgress, ModelDownloader } from './downloader.js';

export type DownloadStatus = 'running' | 'done' | 'failed' | 'cancelled';

export interface DownloadJob {
  readonly id: string;
  readonly ref: string;
  readonly files: readonly string[] | null;
  status: DownloadStatus;
  progress: DownloadProgress | null;
  dir: string | null;
  error: string | null;
  readonly startedAt: number;
}

/**
 * Downloads started from the API run in the background; clients follow them over SSE
 * (`progress`, then `done` or `error`). Finished jobs stay listed until the server stops.
 */
export class DownloadJobs {
  private readonly jobs = new Map<string, DownloadJob>();
  private readonly controllers = new Map<string, AbortController>();
  private readonly events = new EventEmitter();

  constructor(
    private readonly downloader: ModelDownloader | null,
    private readonly modelsDir: string,
  ) {
    this.events.setMaxListeners(0); // one listener per watching client
  }

  list(): DownloadJob[] {
    return [...this.jobs.values()];
  }

  get(id: string): DownloadJob | undefined {
    return this.jobs.get(id);
  }

  listFiles(ref: string): Promise<{ path: string; size: number }[]> {
    return this.need().listFiles(ref);
  }

  start(ref: string, files: readonly string[] | null): DownloadJob {
    const downloader = this.need();
    const job: DownloadJob = { id: randomUUID(), ref, files, status: 'running', progress: null, dir: null, error: null, startedAt: Date.now() };
    const controller = new AbortController();
    this.jobs.set(job.id, job);
    this.controllers.set(job.id, controller);
    downloader.download(ref, {
      modelsDir: this.modelsDir,
      ...(files ? { files } : {}),
      signal: controller.signal,
      onProgress: (p) => {
        job.progress = p;
        this.events.emit(job.id, job);
      },
    }).then(
      (r) => { job.status = 'done'; job.dir = r.dir; },
      (err: unknown) => {
        job.status = controller.signal.aborted ? 'cancelled' : 'failed';
        job.error = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
      },
    ).finally(() => {
      this.controllers.delete(job.id);
      this.events.emit(job.id, job);
    });
    return job;
  }

  cancel(id: string): boolean {
    const c = this.controllers.get(id);
    c?.abort();
    return c !== undefined;
  }

  /** Call `listener` on every change of job `id`; returns the unsubscribe function. */
  watch(id: string, listener: (job: DownloadJob) => void): () => void {
    this.events.on(id, listener);
    return () => this.events.off(id, listener);
  }

  dispose(): void {
    for (const c of this.controllers.values()) c.abort();
  }

  private need(): ModelDownloader {
    if (this.downloader === null) throw new ApiError(501, 'downloads are turned off on this server', 'server_error', null, 'not_implemented');
    return this.downloader;
  }
}
