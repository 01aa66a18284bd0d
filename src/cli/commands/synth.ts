import { runSynth } from '../../synth/synth.js';
import type { Command } from '../command.js';

/** `qllama synth`: a GPTQ checkpoint of real LLaMA shapes with random weights (src/synth/synth.ts). */
export const synthCommand: Command = {
  name: 'synth',
  summary: 'Write a GPTQ checkpoint of LLaMA-7B/13B/33B shapes with random weights, for benchmarks.',
  help: () => [
    'usage: qllama synth --shape llama-7b|llama-13b|llama-33b --out <dir> [--bits 4] [--groupsize 128] [--act-order] [--seed S]',
    '',
    'Writes config.json, quantize_config.json, tokenizer files and model.safetensors (streamed, never whole in memory).',
    '',
  ].join('\n'),
  async run(argv) {
    if (argv.includes('--help') || argv.includes('-h')) {
      process.stdout.write(this.help());
      return 0;
    }
    return runSynth(argv);
  },
};
