import { HubClient } from '../../hub/client.js';
import { parseModelRef } from '../../hub/modelRef.js';
import type { ProgressSink } from '../../hub/progress.js';
import { downloadRepo } from '../../hub/repoDownload.js';
import type { DownloadOptions, DownloadProgress, ModelDownloader, RemoteFile } from './downloader.js';

/**
 * The server's downloader on src/hub: the same resumable, sha256-checked `downloadRepo` that
 * `qllama download` uses, with its progress turned into byte counts for the SSE events.
 */
export function createHubDownloader(client: HubClient = new HubClient()): ModelDownloader {
  return {
    async listFiles(ref: string): Promise<RemoteFile[]> {
      const parsed = parseModelRef(ref);
      const files = await client.listFiles(parsed.repoId, parsed.revision);
      return files.map((f) => ({ path: f.path, size: f.size }));
    },
    async download(ref: string, options: DownloadOptions) {
      const result = await downloadRepo({
        ref: parseModelRef(ref),
        modelsDir: options.modelsDir,
        client,
        ...(options.files ? { files: options.files } : {}),
        signal: options.signal,
        progress: (total) => progressSink(total, options.onProgress),
      });
      return { dir: result.dir };
    },
  };
}

/** Counts bytes per file and in all; reports at most every 200 ms (plus file boundaries). */
function progressSink(total: number, report: (p: DownloadProgress) => void): ProgressSink {
  const files = new Map<string, { bytes: number; size: number }>();
  let bytes = 0;
  let last = 0;
  const emit = (file: string, force: boolean): void => {
    const now = Date.now();
    if (!force && now - last < 200) return;
    last = now;
    const f = files.get(file) ?? { bytes: 0, size: 0 };
    report({ file, fileBytes: f.bytes, fileTotal: f.size, bytes, total });
  };
  return {
    fileStart(name, size) {
      files.set(name, { bytes: 0, size });
      emit(name, true);
    },
    fileAdvance(name, n) {
      const f = files.get(name);
      if (f) f.bytes += n;
      bytes += n;
      emit(name, false);
    },
    fileEnd(name, outcome) {
      const f = files.get(name);
      // a file found already complete counts as fully there
      if (f && outcome === 'present') { bytes += f.size - f.bytes; f.bytes = f.size; }
      emit(name, true);
    },
    close() {},
  };
}
