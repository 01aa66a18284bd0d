import { fileURLToPath } from 'node:url';
import path from 'node:path';

/** Repository root (tests are compiled to dist/test/..., so walk up until package.json). */
export const REPO_ROOT = path.resolve(fileURLToPath(new URL('../../..', import.meta.url)));
/** Read-only shared fixtures and data, beside the repository (in CI too). */
export const SHARED = path.resolve(REPO_ROOT, '..', 'shared');
export const FIXTURES = path.join(SHARED, 'fixtures');
export const DATA = path.join(SHARED, 'data');
/** The model the product ships. */
export const EMBEDDED_MODEL = path.join(REPO_ROOT, 'models', 'tiny-vicuna-4k');
