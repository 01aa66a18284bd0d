import { readFileSync } from 'node:fs';
import path from 'node:path';
import { FIXTURES } from './paths.js';

/** The independent references shipped with each fixture (see ../shared/fixtures/<name>/README.md). */
export interface ReferenceGeneration {
  readonly input_ids: number[];
  readonly greedy_ids: number[];
  readonly top2_gaps: number[];
  readonly greedy_text: string;
}

export interface FixtureReference {
  readonly reference_generations: Record<string, Record<string, ReferenceGeneration>>;
  readonly perplexity: { results: Record<string, Record<string, { ppl: number; windows: number }>> };
  readonly tokenizer_cases: { text: string; ids: number[] }[];
}

export const FIXTURE_NAMES = ['tiny-vicuna', 'tiny-vicuna-4k'] as const;
export const VARIANTS = ['fp16', 'gptq-4bit-128g', 'gptq-4bit-128g-actorder'] as const;

export function loadReference(fixture: string): FixtureReference {
  return JSON.parse(readFileSync(path.join(FIXTURES, fixture, 'reference.json'), 'utf8')) as FixtureReference;
}

export function fixtureDir(fixture: string, variant: string): string {
  return path.join(FIXTURES, fixture, variant);
}

/** Index of the first step whose top-2 logit gap is a near tie (another correct engine may differ from there). */
export function firstNearTie(gaps: readonly number[], threshold = 0.1): number {
  const i = gaps.findIndex((g) => g < threshold);
  return i < 0 ? gaps.length : i;
}
