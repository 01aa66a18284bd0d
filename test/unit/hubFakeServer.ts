import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A loopback stand-in for the Hugging Face Hub: the tree API, /api/models/{repo}, and
 * /{repo}/resolve/{rev}/{path} with Range, a 302 to a "CDN" path for LFS files, a file that
 * drops the connection half-way, a private repo (401 without the token) and a file whose
 * listed sha256 is wrong. Answers 404 without X-Error-Code for unknown repos and branches,
 * like a bare mirror, so the client's probing is exercised too.
 */
export interface FakeFile {
  readonly content: Buffer;
  readonly lfs: boolean;
  /** answer with this sha256 in the listing instead of the real one */
  readonly listedSha256?: string;
}

export interface RequestLog {
  readonly method: string;
  readonly url: string;
  readonly range?: string;
  readonly authorization?: string;
}

export const TOKEN = 'hf_test_token';

export function gitBlobSha1(content: Buffer): string {
  return createHash('sha1').update(`blob ${content.length}\0`).update(content).digest('hex');
}

export function sha256(content: Buffer): string {
  return createHash('sha256').update(content).digest('hex');
}

export class FakeHub {
  /** repo → branch → path → file */
  readonly repos = new Map<string, Map<string, Map<string, FakeFile>>>();
  readonly privateRepos = new Set<string>();
  readonly requests: RequestLog[] = [];
  /** path → how many more GETs of it drop the connection half-way */
  readonly dropsLeft = new Map<string, number>();
  private server: Server | undefined;
  endpoint = '';

  static async start(): Promise<FakeHub> {
    const hub = new FakeHub();
    hub.server = createServer((req, res) => hub.handle(req, res));
    await new Promise<void>((resolve) => hub.server?.listen(0, '127.0.0.1', resolve));
    hub.endpoint = `http://127.0.0.1:${(hub.server.address() as AddressInfo).port}`;
    return hub;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()));
  }

  addFile(repo: string, branch: string, filePath: string, file: FakeFile): void {
    if (!this.repos.has(repo)) this.repos.set(repo, new Map());
    const branches = this.repos.get(repo) as Map<string, Map<string, FakeFile>>;
    if (!branches.has(branch)) branches.set(branch, new Map());
    branches.get(branch)?.set(filePath, file);
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', this.endpoint);
    this.requests.push({ method: req.method ?? 'GET', url: url.pathname + url.search, range: req.headers.range, authorization: req.headers.authorization });
    const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    if (parts[0] === 'cdn') return this.serveCdn(parts[1] ?? '', req, res);
    if (parts[0] === 'api' && parts[1] === 'models') {
      const repo = `${parts[2]}/${parts[3]}`;
      if (!this.authorized(repo, req, res)) return;
      const branches = this.repos.get(repo);
      if (!branches) return void res.writeHead(404).end('{"error":"Repository not found"}');
      if (parts.length === 4) return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: repo }));
      if (parts[4] === 'tree') return this.serveTree(branches.get(parts[5] ?? ''), res);
      return void res.writeHead(404).end();
    }
    // /{user}/{repo}/resolve/{rev}/{path...}
    const repo = `${parts[0]}/${parts[1]}`;
    if (parts[2] !== 'resolve') return void res.writeHead(404).end();
    if (!this.authorized(repo, req, res)) return;
    const branches = this.repos.get(repo);
    if (!branches) return void res.writeHead(404, { 'x-error-code': 'RepoNotFound' }).end();
    const files = branches.get(parts[3] ?? '');
    if (!files) return void res.writeHead(404, { 'x-error-code': 'RevisionNotFound' }).end();
    const filePath = parts.slice(4).join('/');
    const file = files.get(filePath);
    if (!file) return void res.writeHead(404, { 'x-error-code': 'EntryNotFound' }).end();
    if (file.lfs) {
      // The real Hub redirects LFS files to its CDN; the fetch must follow it, Range intact.
      return void res.writeHead(302, { location: `${this.endpoint}/cdn/${sha256(file.content)}?path=${encodeURIComponent(filePath)}` }).end();
    }
    this.serveBytes(filePath, file.content, req, res);
  }

  private authorized(repo: string, req: IncomingMessage, res: ServerResponse): boolean {
    if (!this.privateRepos.has(repo) || req.headers.authorization === `Bearer ${TOKEN}`) return true;
    res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":"Invalid username or password."}');
    return false;
  }

  private serveTree(files: Map<string, FakeFile> | undefined, res: ServerResponse): void {
    if (!files) return void res.writeHead(404).end('{"error":"Revision not found"}');
    const list = [...files].map(([p, f]) => f.lfs
      ? { type: 'file', path: p, size: 134, oid: gitBlobSha1(Buffer.from('pointer')), lfs: { oid: f.listedSha256 ?? sha256(f.content), size: f.content.length, pointerSize: 134 } }
      : { type: 'file', path: p, size: f.content.length, oid: gitBlobSha1(f.content) });
    list.push({ type: 'directory', path: 'sub', size: 0, oid: 'x' });
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(list));
  }

  private serveCdn(sha: string, req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', this.endpoint);
    for (const branches of this.repos.values()) {
      for (const files of branches.values()) {
        for (const [p, f] of files) {
          if (sha256(f.content) === sha && url.searchParams.get('path') === p) return this.serveBytes(p, f.content, req, res);
        }
      }
    }
    res.writeHead(404).end();
  }

  private serveBytes(filePath: string, content: Buffer, req: IncomingMessage, res: ServerResponse): void {
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = m ? Number(m[1]) : 0;
    if (start >= content.length && m) return void res.writeHead(416, { 'content-range': `bytes */${content.length}` }).end();
    const body = content.subarray(start);
    const headers = { 'content-length': String(body.length), 'content-type': 'application/octet-stream', 'accept-ranges': 'bytes' };
    res.writeHead(m ? 206 : 200, m ? { ...headers, 'content-range': `bytes ${start}-${content.length - 1}/${content.length}` } : headers);
    const drops = this.dropsLeft.get(filePath) ?? 0;
    if (drops > 0) {
      this.dropsLeft.set(filePath, drops - 1);
      // Half the promised bytes, then the socket dies: what a lost Wi-Fi looks like to fetch.
      res.write(body.subarray(0, Math.floor(body.length / 2)), () => setTimeout(() => res.socket?.destroy(), 20));
      return;
    }
    res.end(body);
  }
}

export function randomContent(n: number): Buffer {
  return randomBytes(n);
}
