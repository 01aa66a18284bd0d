import { fileURLToPath } from 'node:url';

/** The model shipped inside the package (models/tiny-vicuna-4k), used when --model is omitted. */
export const EMBEDDED_MODEL_DIR = fileURLToPath(new URL('../../../models/tiny-vicuna-4k', import.meta.url));
