import { existsSync } from 'node:fs';
import { parseBackendKind } from '../backends/select.js';
import { LoadedModel } from '../engine/loadedModel.js';
import { numberOpt, stringOpt, type OptionValues } from './command.js';
import { EMBEDDED_MODEL_DIR, defaultTemplateFor } from './defaultModel.js';

/**
 * Loads the model the MODEL_OPTIONS flags name. Without --model it is the embedded
 * tiny-vicuna-4k, which was trained on StableVicuna's `### Human:` format, so that template is
 * its default (its folder name alone would suggest Vicuna v0).
 */
export async function loadFromFlags(values: OptionValues, log: (line: string) => void): Promise<LoadedModel> {
  const dir = await resolveModelArg(stringOpt(values, 'model'), stringOpt(values, 'models-dir') ?? './models', log);
  return LoadedModel.load({
    dir: dir ?? EMBEDDED_MODEL_DIR,
    weights: stringOpt(values, 'weights'),
    backend: parseBackendKind(stringOpt(values, 'backend')),
    contextLength: numberOpt(values, 'ctx', { min: 2, integer: true }),
    threads: numberOpt(values, 'threads', { min: 1, max: 256, integer: true }),
    template: stringOpt(values, 'template') ?? defaultTemplateFor(dir),
    log,
  });
}

export { logToStderr } from './command.js';

/** `user/repo[:branch]` that is not a local folder: fetched from the Hub on first use. */
const HUB_REF = /^[\w.-]+\/[\w.-]+(:[\w./-]+)?$/;

async function resolveModelArg(arg: string | undefined, modelsDir: string, log: (line: string) => void): Promise<string | undefined> {
  if (arg === undefined || existsSync(arg) || !HUB_REF.test(arg)) return arg;
  const { resolveModelRef } = await import('../hub/resolve.js');
  return resolveModelRef(arg, modelsDir, { log });
}
