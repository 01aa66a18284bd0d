import { badRequest } from '../apiError.js';

/**
 * Typed readers for one JSON request field. `null` counts as absent (OpenAI's clients send
 * null for "not set"); a value of the wrong type or range is a 400 that names the field.
 */
type Body = Readonly<Record<string, unknown>>;

export interface NumberRange {
  readonly min?: number;
  readonly max?: number;
  /** exclusive lower bound */
  readonly above?: number;
  readonly integer?: boolean;
}

export function optNumber(body: Body, name: string, range: NumberRange = {}): number | undefined {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  const ok = typeof v === 'number' && Number.isFinite(v)
    && (!range.integer || Number.isInteger(v))
    && (range.min === undefined || v >= range.min)
    && (range.max === undefined || v <= range.max)
    && (range.above === undefined || v > range.above);
  if (!ok) throw badRequest(`${name} must be ${describe(range)}, got ${JSON.stringify(v)}`, name, 'invalid_value');
  return v as number;
}

export function optBoolean(body: Body, name: string): boolean | undefined {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw badRequest(`${name} must be a boolean, got ${JSON.stringify(v)}`, name, 'invalid_type');
  return v;
}

/** OpenAI's `stop`: a string or up to 4 strings (we allow 16: they are cheap here). */
export function optStop(body: Body): string[] {
  const v = body.stop;
  if (v === undefined || v === null) return [];
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || list.length > 16 || !list.every((s): s is string => typeof s === 'string' && s !== '')) {
    throw badRequest('stop must be a non-empty string or an array of at most 16 non-empty strings', 'stop', 'invalid_value');
  }
  return list;
}

function describe(r: NumberRange): string {
  const parts = [r.integer ? 'an integer' : 'a number'];
  if (r.above !== undefined) parts.push(`> ${r.above}`);
  if (r.min !== undefined) parts.push(`≥ ${r.min}`);
  if (r.max !== undefined) parts.push(`≤ ${r.max}`);
  return parts.join(' ');
}
