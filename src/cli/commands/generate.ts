import { generate } from '../../generate/generator.js';
import { UsageError } from '../../errors.js';
import { boolOpt, defineCommand, listOpt, numberOpt, stringOpt } from '../command.js';
import { loadFromFlags, logToStderr } from '../loadFromFlags.js';
import { MODEL_OPTIONS } from '../modelOptions.js';
import { SAMPLING_OPTIONS, samplingFromFlags } from '../samplingFlags.js';

export const generateCommand = defineCommand({
  name: 'generate',
  summary: 'Complete a prompt (raw text, encoded with BOS) and print the completion as it streams.',
  usage: 'qllama generate --prompt <text> [--model <dir>] [--max-tokens N] [--temperature T] [--top-p P] [--top-k K] [--seed S] [--stop S]... [--json]',
  options: {
    prompt: { type: 'string', short: 'p', value: 'text', description: 'the prompt (required)' },
    ...MODEL_OPTIONS,
    ...SAMPLING_OPTIONS,
    json: { type: 'boolean', description: 'print one JSON object: text, token_ids, prompt_token_ids, finish_reason' },
  },
  details: 'example: qllama generate --prompt "### Human: What is the capital of France?\n### Assistant:" --temperature 0 --stop "### Human:"',
  async run(values) {
    const prompt = stringOpt(values, 'prompt');
    if (prompt === undefined) throw new UsageError("--prompt is required (run 'qllama generate --help')");
    const maxNewTokens = numberOpt(values, 'max-tokens', { min: 0, integer: true }) ?? 128;
    const sampling = samplingFromFlags(values, {});
    const json = boolOpt(values, 'json');
    const loaded = await loadFromFlags(values, json ? () => {} : logToStderr);
    try {
      const promptIds = loaded.tokenizer.encode(prompt, { addBos: true });
      const stream = generate(loaded.model, loaded.tokenizer, { promptIds, maxNewTokens, sampling, stop: listOpt(values, 'stop') });
      for (;;) {
        const step = await stream.next();
        if (step.done === true) {
          const r = step.value;
          if (json) {
            process.stdout.write(`${JSON.stringify({ text: r.text, token_ids: r.tokenIds, prompt_token_ids: r.promptTokenIds, finish_reason: r.finishReason, seed: r.seed })}\n`);
          } else {
            process.stdout.write('\n');
          }
          return 0;
        }
        if (!json && step.value.text) process.stdout.write(step.value.text);
      }
    } finally {
      loaded.dispose();
    }
  },
});
