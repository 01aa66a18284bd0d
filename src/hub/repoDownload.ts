import { mkdir, stat, statfs, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { HubClient, type HubFile } from './client.js';
import { downloadFile, PARTIAL_SUFFIX, type DownloadFileOptions, type DownloadOutcome } from './download.js';
import { DiskFullError, HubHttpError } from './errors.js';
import { modelFolderPath, type ModelRef } from './modelRef.js';
import { formatBytes, silentProgress, type ProgressSink } from './progress.js';
import { selectFiles, type FileSelection } from './selectFiles.js';

export interface DownloadRepoOptions extends FileSelection, Pick<DownloadFileOptions, 'maxRetries' | 'retryBaseMs' | 'idleTimeoutMs' | 'signal'> {
  readonly ref: ModelRef;
  readonly modelsDir: string;
  readonly client?: HubClient;
  /** files fetched at once (default 4) */
  readonly concurrency?: number;
  /** made once the file list (and so the total size) is known */
  readonly progress?: (totalBytes: number) => ProgressSink;
}

export interface DownloadRepoResult {
  readonly dir: string;
  readonly files: readonly HubFile[];
  readonly outcomes: ReadonlyMap<string, DownloadOutcome>;
}

/** Written last, so its presence means every selected file arrived and checked out. */
export const MANIFEST_NAME = '.qllama-download.json';

/**
 * Download a repo revision (or the selected files) into `models/<user>_<repo>[_<branch>]/`,
 * several files at a time. The first real failure (auth, 404, checksum, full disk, retries
 * exhausted) stops the other transfers (their partial files stay for the next run) and is thrown.
 */
export async function downloadRepo(options: DownloadRepoOptions): Promise<DownloadRepoResult> {
  const client = options.client ?? new HubClient();
  const { ref } = options;
  const where = `${ref.repoId} on branch "${ref.revision}"`;
  const files = selectFiles(await client.listFiles(ref.repoId, ref.revision), options, where);
  const dir = modelFolderPath(ref, options.modelsDir);
  await mkdir(dir, { recursive: true });
  const targets = files.map((f) => ({ file: f, dest: safeJoin(dir, f.path) }));
  await checkFreeSpace(dir, await bytesStillNeeded(targets));

  const progress = options.progress?.(files.reduce((n, f) => n + f.size, 0)) ?? silentProgress;
  const stop = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
  const outcomes = new Map<string, DownloadOutcome>();
  let firstError: unknown;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < targets.length && firstError === undefined) {
      const { file, dest } = targets[next++] as { file: HubFile; dest: string };
      progress.fileStart(file.path, file.size);
      try {
        const outcome = await downloadFile(client, ref.repoId, ref.revision, file, dest, {
          maxRetries: options.maxRetries, retryBaseMs: options.retryBaseMs, idleTimeoutMs: options.idleTimeoutMs, signal,
          onProgress: (n) => progress.fileAdvance(file.path, n),
        });
        outcomes.set(file.path, outcome);
        progress.fileEnd(file.path, outcome);
      } catch (err) {
        progress.fileEnd(file.path, 'failed');
        if (firstError === undefined) { firstError = err; stop.abort(); }
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.max(1, Math.min(options.concurrency ?? 4, targets.length)) }, worker));
  } finally {
    progress.close();
  }
  if (firstError !== undefined) throw firstError;
  const manifest = { repo: ref.repoId, revision: ref.revision, endpoint: client.endpoint, files: files.map((f) => ({ path: f.path, size: f.size, sha256: f.sha256 })) };
  await writeFile(path.join(dir, MANIFEST_NAME), `${JSON.stringify(manifest, null, 2)}\n`);
  return { dir, files, outcomes };
}

/** Refuse names that would land outside the model folder (a hostile or broken endpoint). */
function safeJoin(dir: string, filePath: string): string {
  const dest = path.resolve(dir, filePath);
  if (!dest.startsWith(path.resolve(dir) + path.sep) || filePath.split('/').includes('..')) {
    throw new HubHttpError(`the Hub listed a file named "${filePath}", which would be written outside ${dir}; refusing it`);
  }
  return dest;
}

async function bytesStillNeeded(targets: readonly { file: HubFile; dest: string }[]): Promise<number> {
  let needed = 0;
  for (const { file, dest } of targets) {
    const done = await stat(dest).then((s) => s.size === file.size, () => false);
    if (!done) needed += file.size - (await stat(dest + PARTIAL_SUFFIX).then((s) => Math.min(s.size, file.size), () => 0));
  }
  return needed;
}

/** Fail before the first byte rather than at 90 %: the sizes are known up front. */
async function checkFreeSpace(dir: string, needed: number): Promise<void> {
  let free: number;
  try {
    const s = await statfs(dir);
    free = Number(s.bavail) * Number(s.bsize);
  } catch {
    return; // not every filesystem answers; the write path still reports ENOSPC
  }
  if (needed > free) {
    throw new DiskFullError(`downloading needs up to ${formatBytes(needed)} but ${dir} has ${formatBytes(free)} free: free some space or pass --models-dir on a bigger disk`);
  }
}
