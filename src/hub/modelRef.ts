import path from 'node:path';
import { InvalidModelRefError } from './errors.js';

/** A Hub model reference: `user/repo` plus the branch (tag or commit) to take files from. */
export interface ModelRef {
  readonly user: string;
  readonly repo: string;
  /** `user/repo`, as the Hub API spells it. */
  readonly repoId: string;
  readonly revision: string;
  /** true when the reference named no branch (so `main` is implied). */
  readonly defaultRevision: boolean;
}

// The Hub's own rule: word characters, '.', '-', starting and ending with a word character,
// at most 96 characters, and no '--' or '..' (reserved by the Hub's cache layout).
const NAME = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?$/;
// Branch names are git refs; we also refuse '..' and leading '/' so the name can never walk
// out of the models folder once it becomes part of a directory name.
const REVISION = /^[A-Za-z0-9_][A-Za-z0-9_./-]{0,254}$/;

/** Parse `user/repo[:branch]`, throwing InvalidModelRefError that shows the expected shape. */
export function parseModelRef(text: string): ModelRef {
  const trimmed = text.trim();
  const colon = trimmed.indexOf(':');
  const repoId = colon < 0 ? trimmed : trimmed.slice(0, colon);
  const revision = colon < 0 ? 'main' : trimmed.slice(colon + 1);
  const parts = repoId.split('/');
  const shape = 'expected user/repo or user/repo:branch, e.g. TheBloke/stable-vicuna-13B-GPTQ:latest';
  if (parts.length !== 2) throw new InvalidModelRefError(`"${text}" is not a Hub model reference: ${shape}`);
  const [user, repo] = parts as [string, string];
  for (const part of parts) {
    if (!NAME.test(part) || part.includes('--') || part.includes('..')) {
      throw new InvalidModelRefError(`"${part}" in "${text}" is not a valid Hub user or repo name (letters, digits, '_', '.', '-'; at most 96): ${shape}`);
    }
  }
  if (!REVISION.test(revision) || revision.includes('..') || revision.endsWith('/')) {
    throw new InvalidModelRefError(`"${revision}" in "${text}" is not a valid branch name: ${shape}`);
  }
  return { user, repo, repoId: `${user}/${repo}`, revision, defaultRevision: colon < 0 };
}

/**
 * The local folder for a reference, the way text-generation-webui names it:
 * `<user>_<repo>` for main, `<user>_<repo>_<branch>` otherwise ('/' in a branch becomes '_'
 * so one reference is always one flat folder).
 */
export function modelFolderName(ref: ModelRef): string {
  const base = `${ref.user}_${ref.repo}`;
  return ref.revision === 'main' ? base : `${base}_${ref.revision.replaceAll('/', '_')}`;
}

export function modelFolderPath(ref: ModelRef, modelsDir: string): string {
  return path.join(modelsDir, modelFolderName(ref));
}
