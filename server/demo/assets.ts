// Where the demo page and the built SDK live on disk, found once at load.
//
// This module runs from two places: `server/demo/assets.ts` (vitest, tsx) and
// `dist/server/demo/assets.js` (after `tsc -p tsconfig.server.json`, whose
// rootDir is `server/`). They sit at different depths under the repo root, so
// a fixed `new URL('../../…')` cannot serve both: walk up to the nearest
// package.json instead (dist/ has none).
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repo root: the nearest ancestor of `from` holding a package.json. */
export function findRoot(from: string): string {
  let dir = from;
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${from}`);
    dir = up;
  }
}

export const ROOT = findRoot(dirname(fileURLToPath(import.meta.url)));

export interface Asset {
  file: string;
  type: string;
  /** Files under dist/ exist only after `npm run build`. */
  built: boolean;
}

/** URL path → file. A fixed table: no path from the request ever reaches the file system. */
export const ASSETS: Readonly<Record<string, Asset>> = {
  '/': { file: 'server/demo/index.html', type: 'text/html; charset=utf-8', built: false },
  '/demo/app.js': { file: 'server/demo/app.js', type: 'text/javascript; charset=utf-8', built: false },
  '/demo/app.css': { file: 'server/demo/app.css', type: 'text/css; charset=utf-8', built: false },
  '/tidings.min.js': { file: 'dist/tidings.min.js', type: 'text/javascript; charset=utf-8', built: true },
  '/tidings.min.js.map': { file: 'dist/tidings.min.js.map', type: 'application/json; charset=utf-8', built: true },
  '/tidings.mjs': { file: 'dist/tidings.mjs', type: 'text/javascript; charset=utf-8', built: true },
};

/**
 * Read an asset fresh on every request: the demo is a development tool, and a
 * rebuilt SDK should show up on reload without restarting the server.
 * Returns null when the file is missing.
 */
export async function readAsset(asset: Asset, root: string = ROOT): Promise<Buffer | null> {
  try {
    return await readFile(resolve(root, asset.file));
  } catch {
    return null;
  }
}
