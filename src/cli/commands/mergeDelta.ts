import { mergeDelta } from '../../hub/mergeDelta.js';
import { SHARD_SIZE_OPTION, boolOpt, defineCommand, logToStderr, requiredDirOpt, shardBytesOpt } from '../command.js';

export const mergeDeltaCommand = defineCommand({
  name: 'merge-delta',
  summary: "Apply a delta (e.g. CarperAI/stable-vicuna-13b-delta) to LLaMA weights: CarperAI's apply_delta, streamed tensor by tensor.",
  usage: 'qllama merge-delta --base <llama dir> --delta <delta dir> --out <dir> [--no-pad-token] [--shard-size <GB>]',
  options: {
    base: { type: 'string', value: 'dir', description: 'original LLaMA weights (.safetensors or .bin)' },
    delta: { type: 'string', value: 'dir', description: 'the delta weights and tokenizer' },
    out: { type: 'string', value: 'dir', description: 'new folder for the merged fp16 model' },
    'no-pad-token': { type: 'boolean', description: "FastChat-style plain sum: don't grow the vocab by a [PAD] row" },
    'shard-size': SHARD_SIZE_OPTION,
  },
  details: [
    'The base gets a [PAD] token first (embed_tokens and lm_head grow by a zero row, 32000 -> 32001),',
    'then every tensor becomes fp16(base + delta) computed in fp32. Tokenizer files come from the delta.',
    '',
    'example:',
    '  qllama merge-delta --base models/llama-13b --delta models/CarperAI_stable-vicuna-13b-delta --out models/stable-vicuna-13b',
  ].join('\n'),
  async run(values) {
    const base = requiredDirOpt(values, 'base', 'merge-delta');
    const delta = requiredDirOpt(values, 'delta', 'merge-delta');
    const out = requiredDirOpt(values, 'out', 'merge-delta');
    const report = await mergeDelta({
      base, delta, out, padToken: !boolOpt(values, 'no-pad-token'), shardBytes: shardBytesOpt(values), log: logToStderr,
    });
    process.stdout.write(`merged ${report.tensors} tensors into ${out} (${report.files.join(', ')})${report.padded.length ? `; [PAD] row added to ${report.padded.join(', ')}` : ''}\n`);
    return 0;
  },
});

export const runMergeDelta = (argv: string[]): Promise<number> => mergeDeltaCommand.run(argv);
export const mergeDeltaHelp = mergeDeltaCommand.help();
