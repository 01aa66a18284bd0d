import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, symlinkSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { HubClient } from '../../src/hub/client.js';
import {
  ChecksumMismatchError, DiskFullError, HubAuthError, HubFileNotFoundError, HubNetworkError, HubRepoNotFoundError, HubRevisionNotFoundError,
} from '../../src/hub/errors.js';
import { downloadFile } from '../../src/hub/download.js';
import { parseModelRef } from '../../src/hub/modelRef.js';
import { createProgress } from '../../src/hub/progress.js';
import { downloadRepo, MANIFEST_NAME } from '../../src/hub/repoDownload.js';
import { resolveModelRef } from '../../src/hub/resolve.js';
import { FakeHub, randomContent, TOKEN } from './hubFakeServer.js';

let hub: FakeHub;
let modelsDir: string;
const config = Buffer.from('{"model_type":"llama","vocab_size":32000}\n');
const weights = randomContent(300_000);
const flaky = randomContent(200_000);
const actOrder = randomContent(150_000);
const corrupt = randomContent(50_000);

before(async () => {
  hub = await FakeHub.start();
  hub.addFile('acme/tiny', 'main', 'config.json', { content: config, lfs: false });
  hub.addFile('acme/tiny', 'main', '.gitattributes', { content: Buffer.from('*.safetensors filter=lfs\n'), lfs: false });
  hub.addFile('acme/tiny', 'main', 'model.safetensors', { content: weights, lfs: true });
  hub.addFile('acme/tiny', 'main', 'pytorch_model.bin', { content: Buffer.from('pickle copy'), lfs: true });
  hub.addFile('acme/tiny', 'latest', 'config.json', { content: config, lfs: false });
  hub.addFile('acme/tiny', 'latest', 'model.act-order.safetensors', { content: actOrder, lfs: true });
  hub.addFile('acme/flaky', 'main', 'shard.safetensors', { content: flaky, lfs: true });
  hub.addFile('acme/corrupt', 'main', 'weights.safetensors', { content: corrupt, lfs: true, listedSha256: 'ab'.repeat(32) });
  hub.addFile('acme/private', 'main', 'config.json', { content: config, lfs: false });
  hub.privateRepos.add('acme/private');
});

after(async () => {
  await hub.stop();
  for (const dir of made) await rm(dir, { recursive: true, force: true });
});

const made: string[] = [];
beforeEach(async () => {
  modelsDir = await mkdtemp(path.join(os.tmpdir(), 'qllama-hub-'));
  made.push(modelsDir);
  hub.requests.length = 0;
});

const client = (token?: string): HubClient => new HubClient({ endpoint: hub.endpoint, token: token ?? '' });
const fast = { maxRetries: 0, retryBaseMs: 1 };

test('main and a branch land in webui-style folders; LFS behind a redirect; side files verified', async () => {
  const main = await downloadRepo({ ref: parseModelRef('acme/tiny'), modelsDir, client: client(), ...fast });
  assert.equal(main.dir, path.join(modelsDir, 'acme_tiny'));
  assert.deepEqual(await readFile(path.join(main.dir, 'model.safetensors')), weights);
  assert.deepEqual(await readFile(path.join(main.dir, 'config.json')), config);
  // .gitattributes and the pickle copy of safetensors weights are skipped by default
  assert.deepEqual(readdirSync(main.dir).sort(), [MANIFEST_NAME, 'config.json', 'model.safetensors'].sort());
  assert.ok(hub.requests.some((r) => r.url.startsWith('/cdn/')), 'the 302 to the CDN was followed');

  const latest = await downloadRepo({ ref: parseModelRef('acme/tiny:latest'), modelsDir, client: client(), ...fast });
  assert.equal(latest.dir, path.join(modelsDir, 'acme_tiny_latest'));
  assert.deepEqual(await readFile(path.join(latest.dir, 'model.act-order.safetensors')), actOrder);

  hub.requests.length = 0;
  const again = await downloadRepo({ ref: parseModelRef('acme/tiny'), modelsDir, client: client(), ...fast });
  assert.deepEqual([...again.outcomes.values()], ['present', 'present']);
  assert.ok(hub.requests.every((r) => r.url.startsWith('/api/')), 'a finished download is not fetched again');
});

test('a dropped connection leaves a partial; the next run resumes with Range and the sha256 still checks', async () => {
  hub.dropsLeft.set('shard.safetensors', 1);
  const ref = parseModelRef('acme/flaky');
  await assert.rejects(downloadRepo({ ref, modelsDir, client: client(), ...fast }), HubNetworkError);
  const dest = path.join(modelsDir, 'acme_flaky', 'shard.safetensors');
  assert.equal(existsSync(dest), false, 'an incomplete file is never under its final name');
  const partialSize = (await stat(`${dest}.partial`)).size;
  assert.ok(partialSize > 0 && partialSize < flaky.length, `partial holds ${partialSize} bytes`);

  hub.requests.length = 0;
  const result = await downloadRepo({ ref, modelsDir, client: client(), ...fast });
  assert.equal(result.outcomes.get('shard.safetensors'), 'downloaded');
  assert.ok(hub.requests.some((r) => r.range === `bytes=${partialSize}-`), 'resumed from the partial size');
  assert.deepEqual(await readFile(dest), flaky);
  assert.equal(existsSync(`${dest}.partial`), false);
});

test('within one run, a drop is retried with backoff and resumed', async () => {
  hub.dropsLeft.set('shard.safetensors', 2);
  const result = await downloadRepo({ ref: parseModelRef('acme/flaky'), modelsDir, client: client(), maxRetries: 3, retryBaseMs: 1 });
  assert.equal(result.outcomes.get('shard.safetensors'), 'downloaded');
  assert.deepEqual(await readFile(path.join(result.dir, 'shard.safetensors')), flaky);
  assert.equal(hub.requests.filter((r) => r.range !== undefined).length, 2 * 2, 'two resumed requests (each redirected once)');
});

test('a wrong checksum is rejected and the file is not left in place', async () => {
  const err = await downloadRepo({ ref: parseModelRef('acme/corrupt'), modelsDir, client: client(), ...fast }).catch((e: unknown) => e);
  assert.ok(err instanceof ChecksumMismatchError, String(err));
  assert.match(err.message, /sha256/);
  assert.deepEqual(readdirSync(path.join(modelsDir, 'acme_corrupt')), []);
});

test('401 on a private repo says to set a token; the token opens it', async () => {
  const err = await downloadRepo({ ref: parseModelRef('acme/private'), modelsDir, client: client(), ...fast }).catch((e: unknown) => e);
  assert.ok(err instanceof HubAuthError, String(err));
  assert.match(err.message, /HF_TOKEN/);
  const ok = await downloadRepo({ ref: parseModelRef('acme/private'), modelsDir, client: client(TOKEN), ...fast });
  assert.deepEqual(await readFile(path.join(ok.dir, 'config.json')), config);
  assert.ok(hub.requests.some((r) => r.authorization === `Bearer ${TOKEN}`));
});

test('404s name what is missing: the repo, the branch, or the file', async () => {
  await assert.rejects(downloadRepo({ ref: parseModelRef('acme/nope'), modelsDir, client: client() }), (e: unknown) => e instanceof HubRepoNotFoundError && /acme\/nope/.test(e.message));
  await assert.rejects(downloadRepo({ ref: parseModelRef('acme/tiny:nobranch'), modelsDir, client: client() }), (e: unknown) => e instanceof HubRevisionNotFoundError && /nobranch/.test(e.message));
  await assert.rejects(downloadRepo({ ref: parseModelRef('acme/tiny'), modelsDir, client: client(), files: ['missing.safetensors'] }), HubFileNotFoundError);
  // A file that vanished between listing and fetching: the resolve endpoint's 404.
  const c = client();
  await assert.rejects(downloadFile(c, 'acme/tiny', 'main', { path: 'gone.bin', size: 3 }, path.join(modelsDir, 'gone.bin')), (e: unknown) => e instanceof HubFileNotFoundError && /gone\.bin/.test(e.message));
});

test('--file and --include select files', async () => {
  const r = await downloadRepo({ ref: parseModelRef('acme/tiny'), modelsDir, client: client(), include: ['*.json'] });
  assert.deepEqual(r.files.map((f) => f.path), ['config.json']);
  const r2 = await downloadRepo({ ref: parseModelRef('acme/tiny'), modelsDir, client: client(), files: ['pytorch_model.bin'] });
  assert.deepEqual(r2.files.map((f) => f.path), ['pytorch_model.bin']);
});

test('a full disk is a named error and keeps what was written', async () => {
  const dir = path.join(modelsDir, 'acme_tiny');
  await rm(dir, { recursive: true, force: true });
  await import('node:fs/promises').then((fs) => fs.mkdir(dir, { recursive: true }));
  // /dev/full answers every write with ENOSPC.
  symlinkSync('/dev/full', path.join(dir, 'model.safetensors.partial'));
  await assert.rejects(downloadRepo({ ref: parseModelRef('acme/tiny'), modelsDir, client: client(), files: ['model.safetensors'], ...fast }), DiskFullError);
});

test('resolveModelRef downloads on first use, then reuses the folder', async () => {
  const lines: string[] = [];
  const quiet = { isTTY: false, write: () => true } as unknown as NodeJS.WriteStream;
  const dir = await resolveModelRef('acme/tiny:latest', modelsDir, { client: client(), progressStream: quiet, log: (l) => lines.push(l) });
  assert.equal(dir, path.join(modelsDir, 'acme_tiny_latest'));
  assert.equal(lines.length, 1);
  hub.requests.length = 0;
  assert.equal(await resolveModelRef('acme/tiny:latest', modelsDir, { client: client(), log: (l) => lines.push(l) }), dir);
  assert.equal(hub.requests.length, 0);
  // an existing directory is taken as is
  await writeFile(path.join(modelsDir, 'x'), '');
  assert.equal(await resolveModelRef(modelsDir, modelsDir), modelsDir);
});

test('progress off a terminal is plain lines, no escape codes', () => {
  let out = '';
  const p = createProgress({ isTTY: false, write: (s: string) => { out += s; return true; } }, 300);
  p.fileStart('a.safetensors', 200);
  p.fileAdvance('a.safetensors', 100);
  p.fileAdvance('a.safetensors', 100);
  p.fileEnd('a.safetensors', 'downloaded');
  p.fileStart('config.json', 100);
  p.fileAdvance('config.json', 100);
  p.fileEnd('config.json', 'present');
  p.close();
  assert.ok(!out.includes('\r') && !out.includes('\u001b'), 'no carriage returns or escape codes');
  assert.match(out, /downloaded +a\.safetensors/);
  assert.match(out, /1 downloaded, 1 already present/);
  let tty = '';
  const t = createProgress({ isTTY: true, columns: 80, write: (s: string) => { tty += s; return true; } }, 200, () => 1e6);
  t.fileStart('a', 200);
  t.fileEnd('a', 'downloaded');
  t.close();
  assert.match(tty, /✓ a/);
});
