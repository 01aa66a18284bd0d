import { UsageError } from '../../errors.js';
import { convertToSafetensors } from '../../hub/convertCheckpoint.js';
import { SHARD_SIZE_OPTION, defineCommand, logToStderr, shardBytesOpt, stringOpt } from '../command.js';

export const convertCommand = defineCommand({
  name: 'convert',
  summary: 'Convert PyTorch .bin weights (single or sharded) to safetensors, without running any pickled code.',
  usage: 'qllama convert <dir> --to safetensors [--out <dir>] [--shard-size <GB>]',
  maxPositionals: 1,
  options: {
    to: { type: 'string', value: 'format', description: 'target format (only safetensors)' },
    out: { type: 'string', value: 'dir', description: 'output folder (default: next to the .bin files)' },
    'shard-size': SHARD_SIZE_OPTION,
  },
  details: 'example:\n  qllama convert models/CarperAI_stable-vicuna-13b-delta --to safetensors --out models/stable-vicuna-13b-delta-st',
  async run(values, positionals) {
    const dir = positionals[0];
    if (dir === undefined) throw new UsageError('missing the folder to convert: qllama convert <dir> --to safetensors');
    if (stringOpt(values, 'to') !== 'safetensors') throw new UsageError('--to safetensors is required (the only target format)');
    const out = stringOpt(values, 'out') ?? dir;
    const report = await convertToSafetensors(dir, out, { shardBytes: shardBytesOpt(values), log: logToStderr });
    process.stdout.write(`converted ${report.tensors} tensors into ${out}: ${report.files.join(', ')}\n`);
    return 0;
  },
});

export const runConvert = (argv: string[]): Promise<number> => convertCommand.run(argv);
export const convertHelp = convertCommand.help();
