// Paths the e2e support code shares. This file is two levels under the repo root.
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const ESM_DIR = join(ROOT, 'e2e/pages/esm');
export const ESM_BUNDLE = join(ESM_DIR, 'dist/bundle.js');
export const SERVER_MAIN = join(ROOT, 'dist/server/main.js');
