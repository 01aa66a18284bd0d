import { UsageError } from '../../errors.js';
import { perplexity } from '../../eval/perplexity.js';
import { readDatasetText } from '../../eval/datasetText.js';
import { boolOpt, defineCommand, numberOpt, stringOpt } from '../command.js';
import { loadFromFlags, logToStderr } from '../loadFromFlags.js';
import { MODEL_OPTIONS } from '../modelOptions.js';

export const evalCommand = defineCommand({
  name: 'eval',
  summary: 'Evaluate a model. `qllama eval ppl`: perplexity as GPTQ-for-LLaMa measures it (BOS + one encode of the text, non-overlapping windows).',
  usage: 'qllama eval ppl --dataset <file .txt|.jsonl[.gz]> [--model <dir>] [--seqlen N] [--max-windows N] [--docs A:B] [--json]',
  maxPositionals: 1,
  options: {
    dataset: { type: 'string', value: 'file', description: 'plain text, or JSON lines with a "text" field (documents joined by a blank line)' },
    seqlen: { type: 'string', value: 'N', description: 'window length in tokens', default: '2048' },
    'max-windows': { type: 'string', value: 'N', description: 'score only the first N windows' },
    docs: { type: 'string', value: 'A:B', description: 'for .jsonl: use documents A..B-1 only' },
    ...MODEL_OPTIONS,
    json: { type: 'boolean', description: 'print one JSON object {"ppl", "windows", "tokens"}' },
  },
  async run(values, positionals) {
    if (positionals[0] !== 'ppl') throw new UsageError(`unknown evaluation "${positionals[0] ?? ''}": the one available is 'qllama eval ppl'`);
    const dataset = stringOpt(values, 'dataset');
    if (dataset === undefined) throw new UsageError('--dataset is required (a .txt or .jsonl file)');
    const seqlen = numberOpt(values, 'seqlen', { min: 2, integer: true }) ?? 2048;
    const maxWindows = numberOpt(values, 'max-windows', { min: 1, integer: true });
    const docs = parseDocs(stringOpt(values, 'docs'));
    const json = boolOpt(values, 'json');
    const text = readDatasetText(dataset, docs);
    const loaded = await loadFromFlags({ ...values, ctx: values.ctx ?? String(seqlen) }, json ? () => {} : logToStderr);
    try {
      if (seqlen > loaded.model.contextLength) {
        throw new UsageError(`--seqlen ${seqlen} exceeds the model's context of ${loaded.model.contextLength}`);
      }
      const ids = loaded.tokenizer.encode(text, { addBos: true, parseSpecial: false });
      const result = await perplexity(loaded.model, ids, seqlen, {
        maxWindows,
        onWindow: json ? undefined : (done, total, ppl) => process.stderr.write(`\rwindow ${done}/${total}  ppl ${ppl.toFixed(4)}   `),
      });
      if (json) process.stdout.write(`${JSON.stringify({ ppl: result.ppl, windows: result.windows, tokens: result.tokens })}\n`);
      else process.stdout.write(`\nperplexity ${result.ppl.toFixed(4)} over ${result.windows} windows of ${seqlen} (${result.tokens} tokens scored)\n`);
      return 0;
    } finally {
      loaded.dispose();
    }
  },
});

function parseDocs(raw: string | undefined): { start: number; end: number } | undefined {
  if (raw === undefined) return undefined;
  const m = /^(\d+):(\d+)$/.exec(raw);
  if (!m) throw new UsageError(`--docs expects A:B (document indices, end exclusive), got "${raw}"`);
  return { start: Number(m[1]), end: Number(m[2]) };
}
