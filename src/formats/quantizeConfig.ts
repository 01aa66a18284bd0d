import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ModelLoadError } from '../errors.js';

/**
 * AutoGPTQ's `quantize_config.json` (`{bits, group_size, desc_act, sym, ...}`). GPTQ-for-LLaMa
 * writes none, so every field is optional and the tensors stay the source of truth; when a
 * field is present the loader checks the tensors agree with it.
 */
export interface QuantizeConfig {
  readonly bits?: number;
  /** -1 means one group per column */
  readonly groupSize?: number;
  readonly descAct?: boolean;
  readonly sym?: boolean;
}

/** quantize_config.json is not valid JSON or has fields of the wrong type. */
export class QuantizeConfigError extends ModelLoadError {}

export const QUANTIZE_CONFIG = 'quantize_config.json';

/** Reads `<dir>/quantize_config.json`; undefined when the folder has none. */
export function quantizeConfigFromDir(dir: string): QuantizeConfig | undefined {
  const file = path.join(dir, QUANTIZE_CONFIG);
  if (!existsSync(file)) return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new QuantizeConfigError(`${file} is not valid JSON (${err instanceof Error ? err.message : String(err)}): fix or delete it`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new QuantizeConfigError(`${file} is not a JSON object: fix or delete it`);
  const c = raw as Record<string, unknown>;
  const field = <T>(key: string, type: 'number' | 'boolean'): T | undefined => {
    const v = c[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== type) throw new QuantizeConfigError(`${file}: "${key}" is ${JSON.stringify(v)}, expected a ${type}; fix or delete the file`);
    return v as T;
  };
  const bits = field<number>('bits', 'number');
  const groupSize = field<number>('group_size', 'number');
  const descAct = field<boolean>('desc_act', 'boolean');
  const sym = field<boolean>('sym', 'boolean');
  return {
    ...(bits !== undefined ? { bits } : {}),
    ...(groupSize !== undefined ? { groupSize } : {}),
    ...(descAct !== undefined ? { descAct } : {}),
    ...(sym !== undefined ? { sym } : {}),
  };
}
