import { existsSync, readdirSync, statSync } from 'node:fs';
import { HubClient } from './client.js';
import { PARTIAL_SUFFIX } from './download.js';
import { parseModelRef, modelFolderPath } from './modelRef.js';
import { createProgress } from './progress.js';
import { downloadRepo, MANIFEST_NAME } from './repoDownload.js';

export interface ResolveOptions {
  readonly client?: HubClient;
  /** where progress goes while downloading (default stderr, so stdout stays clean) */
  readonly progressStream?: NodeJS.WriteStream;
  readonly log?: (line: string) => void;
}

/**
 * Turn what a user typed after `--model` into a local folder: an existing directory is used
 * as is; otherwise `user/repo[:branch]` maps to `models/<user>_<repo>[_<branch>]`, downloaded
 * first when it is not there yet (or an earlier download did not finish).
 */
export async function resolveModelRef(ref: string, modelsDir: string, options: ResolveOptions = {}): Promise<string> {
  if (existsSync(ref) && statSync(ref).isDirectory()) return ref;
  const parsed = parseModelRef(ref);
  const dir = modelFolderPath(parsed, modelsDir);
  if (isComplete(dir)) return dir;
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  log(`downloading ${parsed.repoId} (branch ${parsed.revision}) into ${dir}`);
  const stream = options.progressStream ?? process.stderr;
  await downloadRepo({ ref: parsed, modelsDir, client: options.client, progress: (total) => createProgress(stream, total) });
  return dir;
}

/**
 * Finished when our manifest is there, or (a folder made by text-generation-webui or by hand)
 * when it has a config.json and no partial downloads.
 */
function isComplete(dir: string): boolean {
  if (!existsSync(dir)) return false;
  const names = readdirSync(dir);
  if (names.some((n) => n.endsWith(PARTIAL_SUFFIX))) return false;
  return names.includes(MANIFEST_NAME) || names.includes('config.json') && names.some((n) => n.endsWith('.safetensors') || n.endsWith('.bin'));
}
