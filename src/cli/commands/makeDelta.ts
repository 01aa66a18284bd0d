import { UsageError } from '../../errors.js';
import { makeDelta } from '../../hub/mergeDelta.js';
import { SHARD_SIZE_OPTION, boolOpt, defineCommand, logToStderr, requiredDirOpt, shardBytesOpt, stringOpt } from '../command.js';

export const makeDeltaCommand = defineCommand({
  name: 'make-delta',
  summary: 'Make a delta (target - base) that merge-delta turns back into the target: publish a fine-tune without the base weights.',
  usage: 'qllama make-delta --base <llama dir> --target <fine-tuned dir> --out <dir> [--no-pad-token] [--dtype f16|f32]',
  options: {
    base: { type: 'string', value: 'dir', description: 'original LLaMA weights' },
    target: { type: 'string', value: 'dir', description: 'the fine-tuned model (vocab +1 for [PAD] unless --no-pad-token)' },
    out: { type: 'string', value: 'dir', description: 'new folder for the delta' },
    'no-pad-token': { type: 'boolean', description: 'shapes must match exactly (FastChat-style delta)' },
    dtype: { type: 'string', value: 'f16|f32', description: 'delta precision; f32 makes the round trip exact for any base', default: 'f16' },
    'shard-size': SHARD_SIZE_OPTION,
  },
  async run(values) {
    const get = (name: string): string => requiredDirOpt(values, name, 'make-delta');
    const dtype = stringOpt(values, 'dtype') ?? 'f16';
    if (dtype !== 'f16' && dtype !== 'f32') throw new UsageError(`--dtype must be f16 or f32, got "${dtype}"`);
    const shardBytes = shardBytesOpt(values);
    const report = await makeDelta({
      base: get('base'), target: get('target'), out: get('out'), padToken: !boolOpt(values, 'no-pad-token'),
      dtype: dtype === 'f32' ? 'F32' : 'F16', shardBytes, log: logToStderr,
    });
    process.stdout.write(`wrote a delta of ${report.tensors} tensors (${report.files.join(', ')})\n`);
    return 0;
  },
});

export const runMakeDelta = (argv: string[]): Promise<number> => makeDeltaCommand.run(argv);
export const makeDeltaHelp = makeDeltaCommand.help();
