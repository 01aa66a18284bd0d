import { isRecord, load, save } from './storage';

/** The Parameters panel's values, named as the API fields they become. */
export interface Params {
  max_tokens: number;
  temperature: number;
  top_p: number;
  top_k: number;
  min_p: number;
  typical_p: number;
  repetition_penalty: number;
  presence_penalty: number;
  frequency_penalty: number;
  /** -1 = random */
  seed: number;
  /** one per line */
  stop: string;
}

export type ParamName = keyof Params;

export const DEFAULT_PARAMS: Params = {
  max_tokens: 200, temperature: 0.7, top_p: 0.9, top_k: 20, min_p: 0, typical_p: 1,
  repetition_penalty: 1.15, presence_penalty: 0, frequency_penalty: 0, seed: -1, stop: '',
};

/** Presets in text-generation-webui's spirit: "Deterministic" is greedy, "Creative" samples wide. */
export const PRESETS: Readonly<Record<string, Partial<Params>>> = {
  Default: DEFAULT_PARAMS,
  Deterministic: { temperature: 0, top_p: 1, top_k: 0, min_p: 0, typical_p: 1, repetition_penalty: 1, presence_penalty: 0, frequency_penalty: 0 },
  Creative: { temperature: 1.3, top_p: 0.95, top_k: 100, min_p: 0.02, typical_p: 1, repetition_penalty: 1.1, presence_penalty: 0.3, frequency_penalty: 0.2 },
};

/** Each control: label, range, step, and what it does (shown as a hint). */
export const CONTROLS: readonly { name: Exclude<ParamName, 'stop'>; label: string; min: number; max: number; step: number; hint: string }[] = [
  { name: 'max_tokens', label: 'max new tokens', min: 1, max: 4096, step: 1, hint: 'longest reply' },
  { name: 'temperature', label: 'temperature', min: 0, max: 2, step: 0.01, hint: '0 = greedy' },
  { name: 'top_p', label: 'top-p', min: 0.01, max: 1, step: 0.01, hint: '1 = off' },
  { name: 'top_k', label: 'top-k', min: 0, max: 200, step: 1, hint: '0 = off' },
  { name: 'min_p', label: 'min-p', min: 0, max: 1, step: 0.01, hint: '0 = off' },
  { name: 'typical_p', label: 'typical-p', min: 0.01, max: 1, step: 0.01, hint: '1 = off' },
  { name: 'repetition_penalty', label: 'repetition penalty', min: 0.5, max: 2, step: 0.01, hint: '1 = off' },
  { name: 'presence_penalty', label: 'presence penalty', min: -2, max: 2, step: 0.05, hint: '0 = off' },
  { name: 'frequency_penalty', label: 'frequency penalty', min: -2, max: 2, step: 0.05, hint: '0 = off' },
  { name: 'seed', label: 'seed', min: -1, max: 4294967295, step: 1, hint: '-1 = random' },
];

export function loadParams(): Params {
  return load('params', (raw) => {
    if (!isRecord(raw)) return null;
    const p: Params = { ...DEFAULT_PARAMS };
    for (const c of CONTROLS) if (typeof raw[c.name] === 'number') p[c.name] = raw[c.name] as number;
    if (typeof raw.stop === 'string') p.stop = raw.stop;
    return p;
  }, { ...DEFAULT_PARAMS });
}

export function saveParams(p: Params): void {
  save('params', p);
}

/** The request fields for these parameters (seed -1 and empty stop lists are left out). */
export function requestFields(p: Params): Record<string, unknown> {
  const stop = p.stop.split('\n').map((s) => s.replace(/\\n/g, '\n')).filter((s) => s !== '');
  return {
    max_tokens: p.max_tokens, temperature: p.temperature, top_p: p.top_p, top_k: p.top_k, min_p: p.min_p,
    typical_p: p.typical_p, repetition_penalty: p.repetition_penalty, presence_penalty: p.presence_penalty,
    frequency_penalty: p.frequency_penalty,
    ...(p.seed >= 0 ? { seed: p.seed } : {}),
    ...(stop.length > 0 ? { stop } : {}),
  };
}
