import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from '../errors.js';
import { TEMPLATE_NAMES, type BuiltinTemplateName, type ChatTemplate, type TemplateName } from './chatTemplate.js';
import { BUILTIN_TEMPLATES, JinjaChatTemplate, jinjaSourceFromTokenizerConfig } from './templates/index.js';

export interface TemplateChoice {
  readonly name: TemplateName;
  /** Why this template, in words (shown by `qllama info`). */
  readonly reason: string;
  readonly template: ChatTemplate;
}

export interface SelectOptions {
  /** A name from TEMPLATE_NAMES (`--template`); wins over everything else. */
  readonly override?: string;
  /** Parsed config.json: its `_name_or_path` is tried when the folder name says nothing. */
  readonly config?: unknown;
}

/**
 * Name rules from text-generation-webui models/config.yaml (before the #6904 restructure), the
 * subset that maps to our templates, in the file's order. As there, a rule is a regex matched at
 * the start of the lower-cased folder name (Python re.match) and the LAST matching rule wins;
 * the lookaheads keep "stable-vicuna" and versioned Vicunas out of the v0 rule.
 */
const NAME_RULES: readonly (readonly [pattern: string, template: BuiltinTemplateName])[] = [
  ['.*alpaca-native-4bit', 'alpaca'],
  ['.*llava.*1.5', 'vicuna-v1.1'],
  ['(?!.*v0)(?!.*1.1)(?!.*1_1)(?!.*stable)(?!.*chinese).*vicuna', 'vicuna-v0'],
  ['.*vicuna.*v0', 'vicuna-v0'],
  ['.*vicuna.*(1.1|1_1|1.3|1_3)', 'vicuna-v1.1'],
  ['.*vicuna.*(1.5|1_5)', 'vicuna-v1.1'],
  ['.*stable.*vicuna', 'stable-vicuna'],
  ['(?!.*chat).*chinese-vicuna', 'alpaca'],
  ['.*alpaca', 'alpaca'],
  ['.*nous-hermes-13b', 'alpaca'],
  ['.*airoboros', 'vicuna-v1.1'],
  ['.*alpa(cino|sta)', 'alpaca'],
  ['.*guanaco-.*(7|13|33|65)b', 'vicuna-v0'],
  ['.*wizardlm', 'vicuna-v1.1'],
  ['.*llama(-?)(2|v2).*chat', 'llama-2'],
  ['.*codellama.*instruct', 'llama-2'],
];
const COMPILED_RULES = NAME_RULES.map(([p, t]) => [new RegExp(`^(?:${p})`), t, p] as const);

/** text-generation-webui's fallback when nothing matches (models_settings.py). */
const FALLBACK: BuiltinTemplateName = 'alpaca';

/**
 * Pick the chat template for a model, the way text-generation-webui does: `--template` first;
 * then the model's own `chat_template` in tokenizer_config.json (the model's statement beats a
 * guess from its name); then the folder name rules; then config.json `_name_or_path`; else Alpaca.
 */
export function selectTemplate(modelDirOrName: string, tokenizerConfig?: unknown, options: SelectOptions = {}): TemplateChoice {
  const jinja = jinjaSourceFromTokenizerConfig(tokenizerConfig);
  if (options.override !== undefined) return byOverride(options.override, jinja);

  if (jinja) {
    return { name: 'jinja', reason: 'tokenizer_config.json has a chat_template', template: new JinjaChatTemplate(jinja) };
  }
  const folder = path.basename(path.resolve(modelDirOrName));
  const fromFolder = matchName(folder);
  if (fromFolder) return builtin(fromFolder.name, `model name "${folder}" matches /${fromFolder.pattern}/ (text-generation-webui models/config.yaml)`);

  const nameOrPath = isRecord(options.config) && typeof options.config._name_or_path === 'string' ? options.config._name_or_path : '';
  const configName = nameOrPath ? path.basename(nameOrPath.replace(/[\\/]+$/, '')) : '';
  const fromConfig = configName ? matchName(configName) : null;
  if (fromConfig) return builtin(fromConfig.name, `config.json _name_or_path "${configName}" matches /${fromConfig.pattern}/`);

  return builtin(FALLBACK, `no rule matches "${folder}"; Alpaca is the default (as in text-generation-webui); use --template to choose`);
}

/**
 * selectTemplate for a model folder, reading its tokenizer_config.json (chat_template) and
 * config.json (_name_or_path); a missing or unreadable one counts as absent.
 */
export async function selectTemplateForFolder(dir: string, override?: string): Promise<TemplateChoice> {
  const tokenizerConfig = await readOptionalJson(path.join(dir, 'tokenizer_config.json'));
  const config = await readOptionalJson(path.join(dir, 'config.json'));
  return selectTemplate(dir, tokenizerConfig, { override, config });
}

async function readOptionalJson(file: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as unknown;
  } catch {
    return undefined; // optional side file; the loaders report real problems with required ones
  }
}

/** The last matching name rule, or null. */
export function matchName(name: string): { name: BuiltinTemplateName; pattern: string } | null {
  const lower = name.toLowerCase();
  let found: { name: BuiltinTemplateName; pattern: string } | null = null;
  for (const [re, template, pattern] of COMPILED_RULES) if (re.test(lower)) found = { name: template, pattern };
  return found;
}

function byOverride(raw: string, jinja: ReturnType<typeof jinjaSourceFromTokenizerConfig>): TemplateChoice {
  const name = raw.trim().toLowerCase();
  if (!isTemplateName(name)) {
    throw new UsageError(`unknown chat template "${raw}": choose one of ${TEMPLATE_NAMES.join(', ')}`);
  }
  if (name === 'jinja') {
    if (!jinja) throw new UsageError('--template jinja needs a chat_template in the model\'s tokenizer_config.json, and this model has none');
    return { name, reason: 'chosen with --template (chat_template from tokenizer_config.json)', template: new JinjaChatTemplate(jinja) };
  }
  return builtin(name, 'chosen with --template');
}

function builtin(name: BuiltinTemplateName, reason: string): TemplateChoice {
  return { name, reason, template: BUILTIN_TEMPLATES[name] };
}

function isTemplateName(s: string): s is TemplateName {
  return (TEMPLATE_NAMES as readonly string[]).includes(s);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
