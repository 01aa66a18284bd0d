// One file per variant, so the test runner quantizes the two in parallel (quantizeSupport.ts compareWithGptqForLlama).
import { test } from 'node:test';
import { compareWithGptqForLlama } from './quantizeSupport.js';

test('quantize tiny-vicuna-4k 4-bit g128 true-sequential: same layout, perplexity and errors as GPTQ-for-LLaMa\'s file', () => compareWithGptqForLlama(false));
