import {
  HubAuthError, HubFileNotFoundError, HubHttpError, HubNetworkError, HubRepoNotFoundError, HubRevisionNotFoundError,
} from './errors.js';

/** One file of a repo revision, as the Hub's tree API lists it. */
export interface HubFile {
  /** path inside the repo, '/'-separated */
  readonly path: string;
  /** size in bytes of the real content (the LFS object for LFS files) */
  readonly size: number;
  /** sha256 (hex) of the content, for LFS files: the Hub's integrity promise for weights */
  readonly sha256?: string;
  /** git blob id (sha1 of "blob <size>\0<content>") for small non-LFS files */
  readonly gitOid?: string;
}

export interface HubClientOptions {
  /** default: $HF_ENDPOINT, else https://huggingface.co */
  readonly endpoint?: string;
  /** default: $HF_TOKEN (or the older $HUGGING_FACE_HUB_TOKEN) */
  readonly token?: string;
}

export const DEFAULT_ENDPOINT = 'https://huggingface.co';

interface TreeEntry {
  type?: unknown;
  path?: unknown;
  size?: unknown;
  oid?: unknown;
  lfs?: { oid?: unknown; size?: unknown } | null;
}

/**
 * The subset of the Hugging Face Hub HTTP API a downloader needs: the file list of a revision
 * and the file bytes (with Range, redirects to the CDN followed by fetch). No state besides the
 * endpoint and token, so the CLI and the server can each make their own.
 */
export class HubClient {
  readonly endpoint: string;
  readonly token: string | undefined;

  constructor(options: HubClientOptions = {}) {
    const endpoint = options.endpoint ?? process.env.HF_ENDPOINT ?? DEFAULT_ENDPOINT;
    this.endpoint = endpoint.replace(/\/+$/, '');
    const token = options.token ?? process.env.HF_TOKEN ?? process.env.HUGGING_FACE_HUB_TOKEN;
    this.token = token === '' ? undefined : token;
  }

  /** Every file of `repoId` at `revision` (recursive), following the API's pagination. */
  async listFiles(repoId: string, revision: string): Promise<HubFile[]> {
    const files: HubFile[] = [];
    let url: string | undefined = `${this.endpoint}/api/models/${repoId}/tree/${encodeURIComponent(revision)}?recursive=true&expand=false`;
    while (url !== undefined) {
      const res = await this.request(url, {}, `listing ${repoId}@${revision}`);
      if (res.status !== 200) throw await this.listError(res, repoId, revision);
      const body = await this.json(res, url);
      if (!Array.isArray(body)) throw new HubHttpError(`${url} did not answer a JSON list; is HF_ENDPOINT (${this.endpoint}) a Hugging Face Hub?`);
      for (const entry of body as TreeEntry[]) {
        const file = toHubFile(entry);
        if (file) files.push(file);
      }
      url = nextLink(res.headers.get('link'), url);
    }
    return files;
  }

  /** The URL of a file's bytes at a revision (the Hub answers with a redirect for LFS files). */
  fileUrl(repoId: string, revision: string, filePath: string): string {
    const encodedPath = filePath.split('/').map(encodeURIComponent).join('/');
    return `${this.endpoint}/${repoId}/resolve/${encodeURIComponent(revision)}/${encodedPath}`;
  }

  /**
   * Start fetching a file from byte `start`. Resolves to a response of status 200 (whole file:
   * the server ignored the Range), 206 (from `start`) or 416 (nothing left after `start`);
   * any other status becomes a named error. Network failures reject with the fetch error
   * itself, so the downloader can decide to retry.
   */
  async fetchFile(repoId: string, revision: string, filePath: string, start: number, signal?: AbortSignal): Promise<Response> {
    const headers: Record<string, string> = { 'accept-encoding': 'identity' };
    if (start > 0) headers.range = `bytes=${start}-`;
    const url = this.fileUrl(repoId, revision, filePath);
    const res = await fetch(url, { headers: this.headers(headers), redirect: 'follow', signal });
    if (res.status === 200 || res.status === 206 || res.status === 416) return res;
    await res.body?.cancel();
    throw this.fileError(res, repoId, revision, filePath);
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    const h: Record<string, string> = { 'user-agent': 'qllama/0.1', ...extra };
    // fetch drops Authorization on cross-origin redirects, so the token never reaches the CDN.
    if (this.token) h.authorization = `Bearer ${this.token}`;
    return h;
  }

  private async request(url: string, extra: Record<string, string>, what: string): Promise<Response> {
    try {
      return await fetch(url, { headers: this.headers(extra), redirect: 'follow' });
    } catch (err) {
      throw new HubNetworkError(`${what}: cannot reach ${this.endpoint} (${describeCause(err)}). Check the network, or HF_ENDPOINT if you use a mirror.`, { cause: err });
    }
  }

  private async json(res: Response, url: string): Promise<unknown> {
    try {
      return await res.json();
    } catch (err) {
      throw new HubHttpError(`${url} did not answer valid JSON (${describeCause(err)}); is HF_ENDPOINT (${this.endpoint}) a Hugging Face Hub?`, { cause: err });
    }
  }

  /** 404 from the tree API is ambiguous without X-Error-Code: ask about the repo alone. */
  private async listError(res: Response, repoId: string, revision: string): Promise<Error> {
    await res.body?.cancel();
    const code = res.headers.get('x-error-code');
    if (res.status === 404 && code === null) {
      const probe = await this.request(`${this.endpoint}/api/models/${repoId}`, {}, `looking up ${repoId}`);
      await probe.body?.cancel();
      if (probe.status === 200) return this.revisionNotFound(repoId, revision);
      if (probe.status === 401 || probe.status === 403 || probe.status === 404) return this.fileError(probe, repoId, revision, undefined);
    }
    return this.fileError(res, repoId, revision, undefined);
  }

  private revisionNotFound(repoId: string, revision: string): Error {
    return new HubRevisionNotFoundError(`branch "${revision}" not found in ${repoId}: check the name after ':' (see ${this.endpoint}/${repoId}/tree/main for the branches)`);
  }

  /** Map an error status to the named error that says what to do. */
  private fileError(res: Response, repoId: string, revision: string, filePath: string | undefined): Error {
    const code = res.headers.get('x-error-code');
    const where = `${repoId}@${revision}${filePath ? `/${filePath}` : ''}`;
    const tokenHint = this.token
      ? `the token given (HF_TOKEN or --token) has no access: accept the model's terms at ${this.endpoint}/${repoId} or use another token`
      : 'set HF_TOKEN (a read token from https://huggingface.co/settings/tokens) or pass --token';
    if (code === 'RepoNotFound' || (res.status === 404 && code === null && filePath === undefined)) {
      return new HubRepoNotFoundError(`repo ${repoId} not found: check the spelling; if it is private or gated, ${tokenHint}`);
    }
    if (code === 'RevisionNotFound') return this.revisionNotFound(repoId, revision);
    if (res.status === 401 || res.status === 403) {
      const what = code === 'GatedRepo' ? 'is gated' : 'needs authorization (private or gated repo)';
      return new HubAuthError(`${where} ${what} (HTTP ${res.status}): ${tokenHint}`);
    }
    if (res.status === 404) {
      return new HubFileNotFoundError(`file "${filePath ?? ''}" not found in ${repoId} on branch "${revision}": run 'qllama download ${repoId}${revision === 'main' ? '' : `:${revision}`} --list' to see the files`);
    }
    return new HubHttpError(`${where}: unexpected HTTP ${res.status} ${res.statusText} from ${res.url || this.endpoint}; try again later`);
  }
}

function toHubFile(entry: TreeEntry): HubFile | undefined {
  if (entry.type !== 'file' || typeof entry.path !== 'string' || typeof entry.size !== 'number') return undefined;
  const lfs = entry.lfs;
  if (lfs && typeof lfs.oid === 'string' && typeof lfs.size === 'number') {
    return { path: entry.path, size: lfs.size, sha256: lfs.oid };
  }
  return { path: entry.path, size: entry.size, ...(typeof entry.oid === 'string' ? { gitOid: entry.oid } : {}) };
}

/** RFC 8288 `Link: <url>; rel="next"`, resolved against the current URL. */
function nextLink(header: string | null, current: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(',')) {
    const m = /<([^>]*)>\s*;\s*rel="?next"?/.exec(part);
    if (m) return new URL(m[1] as string, current).toString();
  }
  return undefined;
}

/** fetch wraps the socket error in `cause`; that is the part worth showing. */
export function describeCause(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause;
  if (cause instanceof Error) {
    const code = (cause as NodeJS.ErrnoException).code;
    return `${err.message}: ${code ? `${code} ` : ''}${cause.message}`;
  }
  return err.message;
}
