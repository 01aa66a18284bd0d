import { HubClient } from '../../hub/client.js';
import { parseModelRef, modelFolderPath } from '../../hub/modelRef.js';
import { createProgress, formatBytes } from '../../hub/progress.js';
import { downloadRepo } from '../../hub/repoDownload.js';
import { selectFiles } from '../../hub/selectFiles.js';
import { UsageError } from '../../errors.js';
import { boolOpt, defineCommand, listOpt, numberOpt, stringOpt } from '../command.js';

export { resolveModelRef } from '../../hub/resolve.js';

export const DEFAULT_MODELS_DIR = './models';

export const downloadCommand = defineCommand({
  name: 'download',
  summary: 'Download a model from the Hugging Face Hub into models/<user>_<repo>[_<branch>]/ (resumable, sha256-checked).',
  usage: 'qllama download <user/repo[:branch]> [--file <name>]... [--include <glob>]... [--models-dir <dir>] [--list] [--token <T>]',
  maxPositionals: 1,
  options: {
    file: { type: 'string', multiple: true, value: 'name', description: 'download only this file of the repo' },
    include: { type: 'string', multiple: true, value: 'glob', description: "download only files matching, e.g. '*.safetensors'" },
    'models-dir': { type: 'string', value: 'dir', description: 'folder holding the model folders', default: DEFAULT_MODELS_DIR },
    list: { type: 'boolean', description: 'list the files of the revision (size, sha256) and exit' },
    token: { type: 'string', value: 'T', description: 'Hub access token for private or gated repos (default: $HF_TOKEN)' },
    jobs: { type: 'string', value: 'N', description: 'files downloaded at once', default: '4' },
  },
  details: [
    'The Hub endpoint is $HF_ENDPOINT (default https://huggingface.co). An interrupted download',
    'leaves <file>.partial; running the same command again resumes it.',
    '',
    'examples:',
    '  qllama download TheBloke/stable-vicuna-13B-GPTQ',
    '  qllama download TheBloke/stable-vicuna-13B-GPTQ:latest --include "*.safetensors" --include "*.json"',
  ].join('\n'),
  async run(values, positionals) {
    const refText = positionals[0];
    if (refText === undefined) throw new UsageError('missing the model to download, e.g. qllama download TheBloke/stable-vicuna-13B-GPTQ');
    const ref = parseModelRef(refText);
    const client = new HubClient({ token: stringOpt(values, 'token') });
    const modelsDir = stringOpt(values, 'models-dir') ?? DEFAULT_MODELS_DIR;
    const selection = { files: listOpt(values, 'file'), include: listOpt(values, 'include') };
    if (boolOpt(values, 'list')) {
      const listing = await client.listFiles(ref.repoId, ref.revision);
      const chosen = new Set(selectFiles(listing, selection, `${ref.repoId} on branch "${ref.revision}"`).map((f) => f.path));
      for (const f of listing) {
        const mark = chosen.has(f.path) ? '*' : ' ';
        process.stdout.write(`${mark} ${formatBytes(f.size).padStart(9)}  ${f.path}${f.sha256 ? `  sha256:${f.sha256}` : ''}\n`);
      }
      process.stdout.write(`(* = would be downloaded into ${modelFolderPath(ref, modelsDir)})\n`);
      return 0;
    }
    const result = await downloadRepo({
      ref, modelsDir, client, ...selection,
      concurrency: numberOpt(values, 'jobs', { integer: true, min: 1, max: 32 }),
      progress: (total) => createProgress(process.stderr, total),
    });
    process.stdout.write(`${result.dir}\n`);
    return 0;
  },
});

export const runDownload = (argv: string[]): Promise<number> => downloadCommand.run(argv);
export const downloadHelp = downloadCommand.help();
