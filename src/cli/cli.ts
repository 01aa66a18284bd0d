#!/usr/bin/env node
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
};

function usage(): string {
  return [
    'usage: qllama <command> [options]',
    '',
    'commands:',
    ...Object.keys(COMMANDS).map((name) => `  ${name}`),
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
