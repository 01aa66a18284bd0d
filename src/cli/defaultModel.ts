import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The model shipped inside the package (models/tiny-vicuna-4k), used when --model is omitted. */
export const EMBEDDED_MODEL_DIR = fileURLToPath(new URL('../../../models/tiny-vicuna-4k', import.meta.url));

/**
 * The embedded model was trained on StableVicuna's `### Human:` format; its folder name alone
 * would make text-generation-webui's rules pick Vicuna v0, so it gets an explicit default.
 */
export function defaultTemplateFor(dir: string | undefined): string | undefined {
  return dir === undefined || path.resolve(dir) === EMBEDDED_MODEL_DIR ? 'stable-vicuna' : undefined;
}
