import { parseArgs } from 'node:util';
import { UsageError } from '../errors.js';

/**
 * Command definitions: each command declares its flags once; parsing (node:util parseArgs in
 * strict mode, so an unknown flag is a UsageError) and the help text are derived from that.
 * parseArgs is Node's own, well-kept parser: no dependency needed for flat flags like ours.
 */
export interface OptionDef {
  readonly type: 'string' | 'boolean';
  readonly description: string;
  readonly short?: string;
  readonly multiple?: boolean;
  /** placeholder shown in help, e.g. 'N' for --max-tokens N */
  readonly value?: string;
  readonly default?: string | boolean;
}

export type OptionDefs = Readonly<Record<string, OptionDef>>;

/** Parsed flag values: strings, booleans, or string lists for `multiple` flags. */
export type OptionValues = Readonly<Record<string, string | boolean | string[] | undefined>>;

export interface Command {
  readonly name: string;
  readonly summary: string;
  help(): string;
  run(argv: string[]): Promise<number>;
}

export interface CommandSpec {
  readonly name: string;
  readonly summary: string;
  /** e.g. 'qllama info <model>' */
  readonly usage: string;
  readonly options: OptionDefs;
  /** extra help paragraphs (examples) */
  readonly details?: string;
  readonly maxPositionals?: number;
  run(values: OptionValues, positionals: string[]): Promise<number>;
}

export function defineCommand(spec: CommandSpec): Command {
  const help = (): string => formatHelp(spec);
  return {
    name: spec.name,
    summary: spec.summary,
    help,
    async run(argv: string[]): Promise<number> {
      if (argv.includes('--help') || argv.includes('-h')) {
        process.stdout.write(help());
        return 0;
      }
      const { values, positionals } = parse(spec, argv);
      return spec.run(values, positionals);
    },
  };
}

function parse(spec: CommandSpec, argv: string[]): { values: OptionValues; positionals: string[] } {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> = {};
  for (const [name, def] of Object.entries(spec.options)) {
    options[name] = { type: def.type, ...(def.short ? { short: def.short } : {}), ...(def.multiple ? { multiple: true } : {}) };
  }
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: true });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    throw new UsageError(`${message.replace(/\. To specify a positional.*$/s, '')}\nRun 'qllama ${spec.name} --help' for the flags it takes.`);
  }
  const max = spec.maxPositionals ?? 0;
  if (parsed.positionals.length > max) {
    throw new UsageError(`unexpected argument "${parsed.positionals[max]}"\nusage: ${spec.usage}`);
  }
  const values: Record<string, string | boolean | string[] | undefined> = {};
  for (const [name, def] of Object.entries(spec.options)) {
    const v = parsed.values[name];
    values[name] = Array.isArray(v) ? v.map(String) : (v ?? def.default);
  }
  return { values, positionals: parsed.positionals };
}

function formatHelp(spec: CommandSpec): string {
  const rows = Object.entries(spec.options).map(([name, def]) => {
    const flag = `${def.short ? `-${def.short}, ` : ''}--${name}${def.type === 'string' ? ` <${def.value ?? 'value'}>` : ''}`;
    const extra = def.default !== undefined && def.default !== false ? ` (default: ${String(def.default)})` : '';
    const many = def.multiple ? ' (repeatable)' : '';
    return [flag, `${def.description}${many}${extra}`] as const;
  });
  const width = Math.max(0, ...rows.map(([f]) => f.length)) + 2;
  const lines = [`usage: ${spec.usage}`, '', spec.summary, ''];
  if (rows.length) lines.push('options:', ...rows.map(([f, d]) => `  ${f.padEnd(width)}${d}`));
  if (spec.details) lines.push('', spec.details);
  return `${lines.join('\n')}\n`;
}

/** Progress and status lines go to stderr so stdout carries only the command's result. */
export const logToStderr = (line: string): void => {
  process.stderr.write(`${line}\n`);
};

/** `--shard-size <GB>`, shared by the commands that write a (sharded) safetensors checkpoint. */
export const SHARD_SIZE_OPTION: OptionDef = { type: 'string', value: 'GB', description: 'largest output shard', default: '5' };

/** SHARD_SIZE_OPTION's value in bytes. */
export function shardBytesOpt(values: OptionValues): number {
  return (numberOpt(values, 'shard-size', { min: 0.001 }) ?? 5) * 1e9;
}

// --- typed accessors for parsed values --------------------------------------------------

export function stringOpt(values: OptionValues, name: string): string | undefined {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
}

/** A folder flag the command cannot run without: missing, a UsageError pointing at its --help. */
export function requiredDirOpt(values: OptionValues, name: string, command: string): string {
  const v = stringOpt(values, name);
  if (v === undefined) throw new UsageError(`--${name} <dir> is required; see 'qllama ${command} --help'`);
  return v;
}

export function listOpt(values: OptionValues, name: string): string[] {
  const v = values[name];
  return Array.isArray(v) ? v : typeof v === 'string' ? [v] : [];
}

export function boolOpt(values: OptionValues, name: string): boolean {
  return values[name] === true;
}

/** A numeric flag, checked: `--top-p abc` is a UsageError naming the flag. */
export function numberOpt(values: OptionValues, name: string, check: { min?: number; max?: number; integer?: boolean } = {}): number | undefined {
  const raw = stringOpt(values, name);
  if (raw === undefined) return undefined;
  const n = Number(raw);
  const bad = raw.trim() === '' || !Number.isFinite(n) || (check.integer && !Number.isInteger(n))
    || (check.min !== undefined && n < check.min) || (check.max !== undefined && n > check.max);
  if (bad) {
    const range = check.min !== undefined || check.max !== undefined ? ` in [${check.min ?? '-∞'}, ${check.max ?? '∞'}]` : '';
    throw new UsageError(`--${name} expects ${check.integer ? 'an integer' : 'a number'}${range}, got "${raw}"`);
  }
  return n;
}
