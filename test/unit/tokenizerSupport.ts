// Shared set-up for the tokenizer tests: LLaMA's tokenizer.model in a temp model folder.
import { copyFile, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Tokenizer } from '../../src/tokenizer/index.js';
import { DATA } from '../support/paths.js';

export const LLAMA_TOKENIZER_MODEL = path.join(DATA, 'llama-tokenizer', 'tokenizer.model');

/** A fresh temp folder holding the given files (name → JSON value or raw bytes). */
export async function modelDir(files: Record<string, unknown>, withLlamaModel = true): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'qllama-tok-'));
  if (withLlamaModel) await copyFile(LLAMA_TOKENIZER_MODEL, path.join(dir, 'tokenizer.model'));
  for (const [name, value] of Object.entries(files)) {
    const data = value instanceof Uint8Array || typeof value === 'string' ? value : JSON.stringify(value);
    await writeFile(path.join(dir, name), data);
  }
  return dir;
}

let cached: Promise<Tokenizer> | undefined;
/** LLaMA's tokenizer with no config files beside it (ids come from the model's trainer spec). */
export function llamaTokenizer(): Promise<Tokenizer> {
  cached ??= modelDir({}).then((dir) => Tokenizer.fromModelDir(dir));
  return cached;
}
