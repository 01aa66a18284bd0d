import { createInterface } from 'node:readline';
import { Conversation } from '../../chat/conversation.js';
import { encodeChatPrompt } from '../../chat/encodePrompt.js';
import { generate, type GenerationResult } from '../../generate/generator.js';
import type { LoadedModel } from '../../engine/loadedModel.js';
import type { SamplingOptions } from '../../generate/samplingOptions.js';
import { defineCommand, numberOpt, stringOpt, listOpt } from '../command.js';
import { loadFromFlags, logToStderr } from '../loadFromFlags.js';
import { MODEL_OPTIONS } from '../modelOptions.js';
import { SAMPLING_OPTIONS, samplingFromFlags } from '../samplingFlags.js';

const HELP_LINE = 'commands: /reset (new conversation), /exit (quit); Ctrl-C stops a reply, Ctrl-D quits';

export const chatCommand = defineCommand({
  name: 'chat',
  summary: 'Chat in the terminal with streaming replies, using the model\'s chat template.',
  usage: 'qllama chat [--model <dir>] [--system <text>] [--template <name>] [sampling flags]',
  options: {
    ...MODEL_OPTIONS,
    system: { type: 'string', value: 'text', description: 'system prompt (default: the template\'s)' },
    ...SAMPLING_OPTIONS,
  },
  details: `${HELP_LINE}\nWith stdin not a terminal, each input line is one user turn (handy for scripts).`,
  async run(values) {
    const sampling = samplingFromFlags(values, { temperature: 0.7, topP: 0.9, repetitionPenalty: 1.15 });
    const maxNewTokens = numberOpt(values, 'max-tokens', { min: 1, integer: true }) ?? 256;
    const loaded = await loadFromFlags(values, logToStderr);
    try {
      await chatLoop(loaded, { sampling, maxNewTokens, system: stringOpt(values, 'system'), stop: listOpt(values, 'stop') });
    } finally {
      loaded.dispose();
    }
    return 0;
  },
});

interface ChatSettings {
  readonly sampling: Partial<SamplingOptions>;
  readonly maxNewTokens: number;
  readonly system?: string;
  readonly stop: readonly string[];
}

async function chatLoop(loaded: LoadedModel, settings: ChatSettings): Promise<void> {
  const interactive = process.stdin.isTTY === true;
  const conversation = new Conversation(loaded.template.template, settings.system === undefined ? {} : { system: settings.system });
  const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: interactive, prompt: interactive ? '> ' : '' });
  let current: AbortController | null = null;
  const onInterrupt = (): void => {
    if (current) current.abort();
    else rl.close();
  };
  rl.on('SIGINT', onInterrupt);
  process.on('SIGINT', onInterrupt);
  if (interactive) process.stderr.write(`${HELP_LINE}\n`);
  rl.prompt();
  try {
    for await (const raw of rl) {
      const line = raw.trim();
      if (line === '/exit' || line === '/quit') break;
      if (line === '/reset') {
        conversation.reset();
        process.stderr.write('(conversation cleared)\n');
      } else if (line !== '') {
        conversation.addUser(line);
        current = new AbortController();
        const result = await reply(loaded, conversation, settings, current.signal);
        current = null;
        if (result.finishReason === 'aborted') process.stdout.write(' [stopped]');
        process.stdout.write('\n');
        conversation.addAssistant(result.text);
      }
      rl.prompt();
    }
  } finally {
    process.off('SIGINT', onInterrupt);
    rl.close();
  }
}

async function reply(loaded: LoadedModel, conversation: Conversation, settings: ChatSettings, signal: AbortSignal): Promise<GenerationResult> {
  const { prompt, stop } = conversation.renderForCompletion();
  const promptIds = encodeChatPrompt(loaded.tokenizer, prompt);
  const stream = generate(loaded.model, loaded.tokenizer, {
    promptIds, maxNewTokens: settings.maxNewTokens, sampling: settings.sampling, stop: [...stop, ...settings.stop], signal, continuesPrompt: false,
  }, loaded.kv);
  let first = true;
  for (;;) {
    const step = await stream.next();
    if (step.done === true) return step.value;
    let text = step.value.text;
    // the template leaves a space after "Assistant:"; don't print the model's leading one
    if (first && text) {
      text = text.replace(/^\s+/, '');
      if (text) first = false;
    }
    if (text) process.stdout.write(text);
  }
}
