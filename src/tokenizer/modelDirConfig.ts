/**
 * The tokenizer settings spread over a Hugging Face model folder's side files: which strings are
 * BOS/EOS/UNK/PAD (tokenizer_config.json, special_tokens_map.json), their ids (config.json), and
 * tokens added after training (tokenizer_config.json's added_tokens_decoder, added_tokens.json).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { AddedToken } from './addedTokens.js';
import { TokenizerLoadError } from './errors.js';

export type SpecialRole = 'bos' | 'eos' | 'unk' | 'pad';
export const SPECIAL_ROLES: readonly SpecialRole[] = ['bos', 'eos', 'unk', 'pad'];

/** An added token whose id may still be unknown (named in a special-token map only). */
export interface AddedTokenSpec extends Omit<AddedToken, 'id'> {
  readonly id: number | undefined;
}

export interface ModelDirTokenConfig {
  /** Token strings per role, tokenizer_config.json first, then special_tokens_map.json. */
  readonly tokens: Readonly<Partial<Record<SpecialRole, string>>>;
  /** Ids per role from config.json (what the model was trained with). */
  readonly ids: Readonly<Partial<Record<SpecialRole, number>>>;
  readonly added: readonly AddedTokenSpec[];
}

export type Json = Record<string, unknown>;

export const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Reads a JSON object file; undefined when it does not exist. */
export async function readJsonObject(file: string): Promise<Json | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new TokenizerLoadError(`cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new TokenizerLoadError(`${file} is not valid JSON (${(err as Error).message}): fix or re-download it`, {
      cause: err,
    });
  }
  if (!isObject(value)) throw new TokenizerLoadError(`${file} must hold a JSON object: fix or re-download it`);
  return value;
}

/** A token as the HF files write it: a string, or an AddedToken object with `content`. */
function tokenContent(v: unknown): string | undefined {
  const s = isObject(v) ? v.content : v;
  // Early Vicuna conversions write "" for tokens they meant to leave unset.
  return typeof s === 'string' && s.length > 0 ? s : undefined;
}

function tokenSpec(v: unknown, id: number | undefined, special: boolean): AddedTokenSpec | undefined {
  const content = tokenContent(v);
  if (content === undefined) return undefined;
  const o = isObject(v) ? v : {};
  return {
    id,
    content,
    special: typeof o.special === 'boolean' ? o.special : special,
    lstrip: o.lstrip === true,
    rstrip: o.rstrip === true,
  };
}

/** First id of a config field that may be a number or a list of numbers (LLaMA 3's eos). */
function configId(v: unknown): number | undefined {
  const first = Array.isArray(v) ? v[0] : v;
  return typeof first === 'number' && Number.isInteger(first) && first >= 0 ? first : undefined;
}

export async function readModelDirTokenConfig(dir: string): Promise<ModelDirTokenConfig> {
  const [tokenizerConfig, specialMap, config, addedJson] = await Promise.all(
    ['tokenizer_config.json', 'special_tokens_map.json', 'config.json', 'added_tokens.json'].map((f) =>
      readJsonObject(path.join(dir, f)),
    ),
  );
  const tokens: Partial<Record<SpecialRole, string>> = {};
  const ids: Partial<Record<SpecialRole, number>> = {};
  const added: AddedTokenSpec[] = [];
  for (const role of SPECIAL_ROLES) {
    const key = `${role}_token`;
    const content = tokenContent(tokenizerConfig?.[key]) ?? tokenContent(specialMap?.[key]);
    if (content !== undefined) tokens[role] = content;
    for (const source of [tokenizerConfig?.[key], specialMap?.[key]]) {
      const spec = tokenSpec(source, undefined, true);
      if (spec !== undefined) added.push(spec);
    }
    const id = configId(config?.[`${role}_token_id`]);
    if (id !== undefined) ids[role] = id;
  }
  for (const source of [tokenizerConfig, specialMap]) {
    const extra = source?.additional_special_tokens;
    if (Array.isArray(extra)) for (const t of extra) pushDefined(added, tokenSpec(t, undefined, true));
  }
  const decoder = tokenizerConfig?.added_tokens_decoder;
  if (isObject(decoder)) {
    for (const [key, v] of Object.entries(decoder)) {
      const id = Number(key);
      if (!Number.isInteger(id) || id < 0) {
        throw new TokenizerLoadError(`added_tokens_decoder in ${dir}/tokenizer_config.json has a bad id "${key}"`);
      }
      pushDefined(added, tokenSpec(v, id, false));
    }
  }
  if (addedJson !== undefined) {
    for (const [content, id] of Object.entries(addedJson)) {
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) {
        throw new TokenizerLoadError(`${dir}/added_tokens.json maps "${content}" to ${String(id)}, not an id`);
      }
      // Listed in a special-token map too? Then the spec above already marks it special.
      pushDefined(added, tokenSpec(content, id, false));
    }
  }
  return { tokens, ids, added };
}

function pushDefined<T>(list: T[], v: T | undefined): void {
  if (v !== undefined) list.push(v);
}
