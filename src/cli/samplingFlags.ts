import type { SamplingOptions } from '../generate/samplingOptions.js';
import { numberOpt, type OptionDefs, type OptionValues } from './command.js';

/** Sampling and length flags shared by `generate` and `chat`. */
export const SAMPLING_OPTIONS: OptionDefs = {
  'max-tokens': { type: 'string', value: 'N', description: 'maximum new tokens' },
  temperature: { type: 'string', short: 't', value: 'T', description: 'sampling temperature; 0 = greedy' },
  'top-p': { type: 'string', value: 'P', description: 'nucleus sampling mass (1 = off)' },
  'top-k': { type: 'string', value: 'K', description: 'keep the K most likely tokens (0 = off)' },
  'min-p': { type: 'string', value: 'P', description: 'drop tokens below P × the top probability (0 = off)' },
  'typical-p': { type: 'string', value: 'P', description: 'locally typical sampling mass (1 = off)' },
  'repetition-penalty': { type: 'string', value: 'R', description: 'divide logits of repeated tokens (1 = off)' },
  'presence-penalty': { type: 'string', value: 'X', description: 'OpenAI presence penalty (0 = off)' },
  'frequency-penalty': { type: 'string', value: 'X', description: 'OpenAI frequency penalty (0 = off)' },
  seed: { type: 'string', value: 'S', description: 'random seed (default: random, printed with --json)' },
  stop: { type: 'string', multiple: true, value: 'text', description: 'stop string; the reply ends before it' },
};

export function samplingFromFlags(values: OptionValues, defaults: Partial<SamplingOptions>): Partial<SamplingOptions> {
  const pick = (name: string, check: Parameters<typeof numberOpt>[2] = {}): number | undefined => numberOpt(values, name, check);
  const out: Record<string, number> = {};
  const set = (key: keyof SamplingOptions, v: number | undefined): void => {
    const d = defaults[key];
    if (v !== undefined) out[key] = v;
    else if (typeof d === 'number') out[key] = d;
  };
  set('temperature', pick('temperature', { min: 0 }));
  set('topP', pick('top-p', { min: 0, max: 1 }));
  set('topK', pick('top-k', { min: 0, integer: true }));
  set('minP', pick('min-p', { min: 0, max: 1 }));
  set('typicalP', pick('typical-p', { min: 0, max: 1 }));
  set('repetitionPenalty', pick('repetition-penalty', { min: 0 }));
  set('presencePenalty', pick('presence-penalty', { min: -2, max: 2 }));
  set('frequencyPenalty', pick('frequency-penalty', { min: -2, max: 2 }));
  set('seed', pick('seed', { min: 0, max: 2 ** 32 - 1, integer: true }));
  return out as Partial<SamplingOptions>;
}
