import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, stat, truncate, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { QllamaError } from '../errors.js';
import { describeCause, type HubClient, type HubFile } from './client.js';
import { ChecksumMismatchError, DiskFullError, HubHttpError, HubNetworkError } from './errors.js';

export interface DownloadFileOptions {
  /** attempts after the first, on network failure, within this run (default 5) */
  readonly maxRetries?: number;
  /** first backoff delay; doubles per failed attempt, capped at 30 s (default 1000 ms) */
  readonly retryBaseMs?: number;
  /** a connection that sends nothing for this long counts as lost (default 60 s) */
  readonly idleTimeoutMs?: number;
  /** called with each chunk's byte count, and once with the bytes already on disk */
  readonly onProgress?: (bytes: number) => void;
  readonly signal?: AbortSignal;
}

export type DownloadOutcome = 'downloaded' | 'present';

export const PARTIAL_SUFFIX = '.partial';

/** A failure worth another attempt: the connection, not the file or the disk. */
class RetryableError extends Error {}

/**
 * Download one file to `dest`, resumably: bytes go to `<dest>.partial`; a later call continues
 * it with a Range request; the file is renamed to `dest` only once its size and hash match the
 * Hub's listing. A wrong hash deletes the partial (its bytes cannot be trusted to resume from).
 * A file already at `dest` with the right size is kept without re-hashing, so re-running a
 * finished download costs one listing request.
 */
export async function downloadFile(client: HubClient, repoId: string, revision: string, file: HubFile, dest: string, options: DownloadFileOptions = {}): Promise<DownloadOutcome> {
  const existing = await sizeOf(dest);
  if (existing === file.size) {
    options.onProgress?.(file.size);
    return 'present';
  }
  await mkdir(path.dirname(dest), { recursive: true });
  const partial = dest + PARTIAL_SUFFIX;
  let have = (await sizeOf(partial)) ?? 0;
  if (have > file.size) {
    await truncate(partial, 0);
    have = 0;
  }
  let hash = newHash(file);
  if (have > 0) await hashExisting(hash, partial);
  options.onProgress?.(have);

  const maxRetries = options.maxRetries ?? 5;
  let failures = 0;
  while (have < file.size) {
    const before = have;
    try {
      const result = await fetchInto(client, repoId, revision, file, partial, have, hash, options);
      have = result.have;
      if (result.restarted) hash = result.hash;
      if (result.stale) continue;
      if (have < file.size) throw new RetryableError(`connection closed at byte ${have} of ${file.size}`);
    } catch (err) {
      if (!(err instanceof RetryableError) || options.signal?.aborted) throw err;
      have = (await sizeOf(partial)) ?? 0;
      // Progress resets the budget: a slow but moving link should finish, not give up.
      failures = have > before ? 1 : failures + 1;
      if (failures > maxRetries) {
        throw new HubNetworkError(`${file.path}: download failed ${failures} times (${err.message}); ${have} of ${file.size} bytes kept in ${partial}: run the same command again to resume`, { cause: err });
      }
      await sleep(Math.min(30_000, (options.retryBaseMs ?? 1000) * 2 ** (failures - 1)), options.signal);
    }
  }
  if (have > file.size) {
    await unlink(partial).catch(() => undefined);
    throw new ChecksumMismatchError(`${file.path}: received ${have} bytes but the Hub lists ${file.size}; the partial file was deleted, run the command again`);
  }
  const problem = checkDigest(hash, file);
  if (problem) {
    await unlink(partial).catch(() => undefined);
    throw new ChecksumMismatchError(`${file.path}: ${problem}; the corrupt file was deleted. Run the command again; if it repeats, the mirror (HF_ENDPOINT) serves bad data`);
  }
  await rename(partial, dest);
  return 'downloaded';
}

interface FetchResult {
  have: number;
  restarted: boolean;
  /** the partial was longer than the server's file and has been emptied: go again at once */
  stale?: boolean;
  hash: Hash;
}

/** One HTTP attempt from byte `have`: append what arrives to the partial file. */
async function fetchInto(client: HubClient, repoId: string, revision: string, file: HubFile, partial: string, startAt: number, hash: Hash, options: DownloadFileOptions): Promise<FetchResult> {
  const idle = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, idle.signal]) : idle.signal;
  const idleMs = options.idleTimeoutMs ?? 60_000;
  let timer = setTimeout(() => idle.abort(), idleMs);
  let have = startAt;
  let restarted = false;
  try {
    let res: Response;
    try {
      res = await client.fetchFile(repoId, revision, file.path, have, signal);
    } catch (err) {
      if (err instanceof QllamaError) throw err;
      throw new RetryableError(describeCause(err));
    }
    if (res.status === 416) {
      if (have === 0) throw new HubHttpError(`${file.path}: the server refused a plain GET with 416; try again later`);
      // Nothing after `have`: the partial holds more than the server has, so it is stale.
      await res.body?.cancel();
      await truncate(partial, 0);
      return { have: 0, restarted: true, stale: true, hash: newHash(file) };
    }
    if (res.status === 200 && have > 0) {
      // The server (or a proxy) ignored Range: start over rather than append a second copy.
      options.onProgress?.(-have);
      have = 0;
      restarted = true;
      hash = newHash(file);
    } else if (res.status === 206) {
      const range = res.headers.get('content-range');
      const m = range ? /^bytes (\d+)-/.exec(range) : null;
      if (!m || Number(m[1]) !== have) {
        await res.body?.cancel();
        throw new HubHttpError(`${file.path}: asked for bytes from ${have} but the server sent "${range ?? 'no Content-Range'}"; delete ${partial} and try again`);
      }
    }
    if (!res.body) throw new RetryableError('empty response body');
    const fh = await open(partial, have === 0 ? 'w' : 'a');
    try {
      const reader = res.body.getReader();
      for (;;) {
        let chunk: Awaited<ReturnType<typeof reader.read>>;
        try {
          chunk = await reader.read();
        } catch (err) {
          throw new RetryableError(describeCause(err));
        }
        if (chunk.done) break;
        clearTimeout(timer);
        timer = setTimeout(() => idle.abort(), idleMs);
        await writeAll(fh, chunk.value, partial);
        hash.update(chunk.value);
        have += chunk.value.byteLength;
        options.onProgress?.(chunk.value.byteLength);
        if (have > file.size) break;
      }
    } finally {
      await fh.close();
    }
    return { have, restarted, hash };
  } finally {
    clearTimeout(timer);
  }
}

async function writeAll(fh: FileHandle, bytes: Uint8Array, where: string): Promise<void> {
  try {
    let off = 0;
    while (off < bytes.byteLength) {
      const { bytesWritten } = await fh.write(bytes, off, bytes.byteLength - off);
      off += bytesWritten;
    }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC' || code === 'EDQUOT') {
      throw new DiskFullError(`no space left while writing ${where}: free some space (or pass --models-dir on a bigger disk) and run the command again; it resumes from what is written`, { cause: err });
    }
    throw err;
  }
}

/** sha256 for LFS files; git's blob sha1 for small files; size-only when the Hub gave neither. */
function newHash(file: HubFile): Hash {
  if (file.sha256) return createHash('sha256');
  const h = createHash('sha1');
  if (file.gitOid) h.update(`blob ${file.size}\0`);
  return h;
}

function checkDigest(hash: Hash, file: HubFile): string | undefined {
  const expected = file.sha256 ?? file.gitOid;
  if (!expected) return undefined;
  const got = hash.digest('hex');
  if (got.toLowerCase() === expected.toLowerCase()) return undefined;
  return `${file.sha256 ? 'sha256' : 'git blob sha1'} is ${got}, the Hub lists ${expected}`;
}

async function hashExisting(hash: Hash, file: string): Promise<void> {
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
}

async function sizeOf(file: string): Promise<number | undefined> {
  try {
    const s = await stat(file);
    return s.isFile() ? s.size : undefined;
  } catch {
    return undefined;
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });
}
