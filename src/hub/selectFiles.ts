import type { HubFile } from './client.js';
import { HubFileNotFoundError } from './errors.js';
import { globMatcher } from './glob.js';

export interface FileSelection {
  /** exact paths (--file); each must exist */
  readonly files?: readonly string[];
  /** glob patterns (--include) */
  readonly include?: readonly string[];
}

// Weights in formats qllama does not load, or that duplicate a .safetensors copy in the same
// revision (text-generation-webui skips them the same way).
const OTHER_WEIGHTS = /\.(bin|pt|pth|ckpt|h5|msgpack|ot|onnx|gguf|ggml)$/i;

/**
 * Which files of a listing to fetch. With --file/--include: exactly those. Otherwise all,
 * minus repo plumbing (.gitattributes) and, when the revision has .safetensors weights, the
 * pickle/other-framework copies of the same weights.
 */
export function selectFiles(listing: readonly HubFile[], selection: FileSelection, where: string): HubFile[] {
  const wanted = selection.files ?? [];
  const include = selection.include ?? [];
  if (wanted.length || include.length) {
    const byPath = new Map(listing.map((f) => [f.path, f]));
    for (const name of wanted) {
      if (!byPath.has(name)) {
        const near = listing.filter((f) => f.path.endsWith(name) || name.endsWith(f.path)).map((f) => f.path);
        throw new HubFileNotFoundError(`file "${name}" not found in ${where}${near.length ? ` (did you mean ${near.join(', ')}?)` : ''}; use --list to see the files`);
      }
    }
    const match = globMatcher(include);
    const chosen = listing.filter((f) => wanted.includes(f.path) || (include.length > 0 && match(f.path)));
    if (chosen.length === 0) throw new HubFileNotFoundError(`no file in ${where} matches --include ${include.join(' ')}; use --list to see the files`);
    return chosen;
  }
  const hasSafetensors = listing.some((f) => f.path.endsWith('.safetensors'));
  return listing.filter((f) => !f.path.endsWith('.gitattributes') && !(hasSafetensors && OTHER_WEIGHTS.test(f.path)));
}
