#!/usr/bin/env node
import './threadPool.js'; // first: sizes libuv's pool before any I/O
import { QllamaError } from '../errors.js';
import type { Command } from './command.js';

/**
 * qllama's entry point: find the command, run it, turn QllamaErrors into one clear line on
 * stderr and a non-zero exit (no stack trace for user errors). Commands load lazily so that
 * `qllama info` never pays for loading the CUDA bindings or the HTTP server.
 */
const COMMANDS: Readonly<Record<string, () => Promise<Command>>> = {
  info: async () => (await import('./commands/info.js')).infoCommand,
  generate: async () => (await import('./commands/generate.js')).generateCommand,
  chat: async () => (await import('./commands/chat.js')).chatCommand,
  eval: async () => (await import('./commands/eval.js')).evalCommand,
  serve: async () => (await import('./commands/serve.js')).serveCommand,
  download: async () => (await import('./commands/download.js')).downloadCommand,
  convert: async () => (await import('./commands/convert.js')).convertCommand,
  'merge-delta': async () => (await import('./commands/mergeDelta.js')).mergeDeltaCommand,
  'make-delta': async () => (await import('./commands/makeDelta.js')).makeDeltaCommand,
  synth: async () => (await import('./commands/synth.js')).synthCommand,
  quantize: async () => (await import('./commands/quantize.js')).quantizeCommand,
};

/** One line per command for the top-level help (kept here so help needs no module loads). */
const SUMMARIES: Readonly<Record<keyof typeof COMMANDS, string>> = {
  info: 'show format, bits, groupsize, act-order, vocab, layers, template of a model',
  generate: 'complete a prompt (streams; --json for ids)',
  chat: 'interactive chat in the terminal',
  eval: 'perplexity (eval ppl)',
  serve: 'OpenAI-compatible HTTP API and web UI',
  download: 'download user/repo[:branch] from the Hugging Face Hub',
  convert: 'convert PyTorch .bin checkpoints to safetensors (safe unpickler)',
  'merge-delta': 'add a delta (e.g. StableVicuna) to base LLaMA weights',
  'make-delta': 'the inverse of merge-delta',
  synth: 'random GPTQ checkpoint of LLaMA shapes, for benchmarks',
  quantize: 'GPTQ-quantize an fp16 model (GPTQ-for-LLaMa semantics and file layout)',
};

function usage(): string {
  return [
    'usage: qllama <command> [options]',
    '',
    'commands:',
    ...Object.entries(SUMMARIES).map(([name, summary]) => `  ${name.padEnd(12)} ${summary}`),
    '',
    "Run 'qllama <command> --help' for a command's options.",
    '',
  ].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage());
    return name === undefined ? 2 : 0;
  }
  if (name === '--version') {
    process.stdout.write('qllama 0.1.0\n');
    return 0;
  }
  const load = COMMANDS[name];
  if (!load) {
    process.stderr.write(`qllama: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  const command = await load();
  return command.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err: unknown) => {
    if (err instanceof QllamaError) {
      process.stderr.write(`qllama: ${err.name}: ${err.message}\n`);
      process.exitCode = err.exitCode;
    } else {
      process.stderr.write(`qllama: internal error (please report it): ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 70;
    }
  },
);
