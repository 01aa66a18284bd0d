import { readdir, realpath } from 'node:fs/promises';
import path from 'node:path';
import { selectTemplateForFolder } from '../../chat/templateSelect.js';
import { EMBEDDED_MODEL_DIR, defaultTemplateFor } from '../../cli/defaultModel.js';
import { discoverModel } from '../../formats/modelFolder.js';

/** A model folder as the Model tab and GET /api/models show it. */
export interface LocalModel {
  /** The folder name: what clients send as `model`. */
  readonly id: string;
  readonly dir: string;
  readonly embedded: boolean;
  /** Detected from the files; absent when the folder could not be read as a model. */
  readonly settings?: DetectedSettings;
  /** Why the folder is not loadable, in words. */
  readonly error?: string;
}

export interface DetectedSettings {
  readonly format: string;
  readonly bits: number;
  readonly groupSize: number | null;
  readonly actOrder: boolean;
  readonly weights: string;
  readonly contextLength: number;
  readonly layers: number;
  readonly vocabSize: number;
  readonly template: string;
  readonly templateReason: string;
}

/** The template the embedded tiny-vicuna-4k needs: the CLI's own default for it (stable-vicuna). */
export const EMBEDDED_TEMPLATE = defaultTemplateFor(EMBEDDED_MODEL_DIR);

/**
 * Every sub-folder of `modelsDir` (one level, as text-generation-webui's models/ folder), plus
 * the embedded model and `extraDirs` (e.g. --model pointing elsewhere). The first entry wins
 * when two have the same id, so a folder in models/ shadows the embedded model's name.
 */
export async function listLocalModels(modelsDir: string, extraDirs: readonly string[] = []): Promise<LocalModel[]> {
  const dirs: string[] = [];
  try {
    for (const e of await readdir(modelsDir, { withFileTypes: true })) {
      if (e.isDirectory() && !e.name.startsWith('.')) dirs.push(path.join(modelsDir, e.name));
    }
  } catch {
    // a missing models folder just means nothing is downloaded yet
  }
  dirs.sort();
  const embeddedReal = await realpath(EMBEDDED_MODEL_DIR).catch(() => EMBEDDED_MODEL_DIR);
  const seenIds = new Set<string>();
  const seenDirs = new Set<string>();
  const out: LocalModel[] = [];
  for (const dir of [...extraDirs, ...dirs, EMBEDDED_MODEL_DIR]) {
    const real = await realpath(dir).catch(() => path.resolve(dir));
    const id = path.basename(real);
    if (seenIds.has(id) || seenDirs.has(real)) continue;
    seenIds.add(id);
    seenDirs.add(real);
    out.push(await describe(id, real, real === embeddedReal));
  }
  return out;
}

async function describe(id: string, dir: string, embedded: boolean): Promise<LocalModel> {
  try {
    const info = discoverModel(dir);
    const template = await selectTemplateForFolder(dir, embedded ? EMBEDDED_TEMPLATE : undefined);
    const settings: DetectedSettings = {
      format: info.format,
      bits: info.gptq?.bits ?? 16,
      groupSize: info.gptq?.groupSize ?? null,
      actOrder: info.gptq?.actOrder ?? false,
      weights: path.basename(info.weightsPath),
      contextLength: info.config.maxPositionEmbeddings,
      layers: info.config.numLayers,
      vocabSize: info.config.vocabSize,
      template: template.name,
      templateReason: embedded ? 'the embedded model was trained on StableVicuna\'s format' : template.reason,
    };
    return { id, dir, embedded, settings };
  } catch (err) {
    return { id, dir, embedded, error: err instanceof Error ? err.message : String(err) };
  }
}
