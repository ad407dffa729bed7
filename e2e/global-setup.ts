// Once per run: make sure dist/ is current (the server child processes and the
// script-tag page use it), then bundle the ESM page with rollup's JS API, the
// way a web-mail frontend would bundle the SDK.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { rollup, type Plugin } from 'rollup';
import { nodeResolve } from '@rollup/plugin-node-resolve';
import { ESM_BUNDLE, ESM_DIR, ROOT } from './support/paths.js';

const BUILT = ['dist/server/main.js', 'dist/tidings.min.js', 'dist/tidings.mjs', 'dist/react.mjs'];

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestMtime(p));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

/** Rebuild when a build output is missing or older than a source file (E2E_BUILD=0 skips, =1 forces). */
function ensureBuilt(): void {
  if (process.env['E2E_BUILD'] === '0') return;
  const outputs = BUILT.map((f) => join(ROOT, f));
  const missing = outputs.some((f) => !existsSync(f));
  const oldest = missing ? 0 : Math.min(...outputs.map((f) => statSync(f).mtimeMs));
  const sources = Math.max(newestMtime(join(ROOT, 'src')), newestMtime(join(ROOT, 'server')));
  if (process.env['E2E_BUILD'] !== '1' && !missing && oldest >= sources) return;
  console.log('[e2e] building dist/ (npm run build)');
  execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'inherit' });
}

/** `import … from 'tidings'` resolves to the package's own ESM build, as if installed. */
const selfReference: Plugin = {
  name: 'tidings-self-reference',
  resolveId(id) {
    return id === 'tidings' ? join(ROOT, 'dist/tidings.mjs') : null;
  },
};

async function bundleEsmPage(): Promise<void> {
  const bundle = await rollup({ input: join(ESM_DIR, 'main.js'), plugins: [selfReference, nodeResolve({ browser: true })] });
  try {
    await bundle.write({ file: ESM_BUNDLE, format: 'es', sourcemap: true });
  } finally {
    await bundle.close();
  }
}

export default async function globalSetup(): Promise<void> {
  ensureBuilt();
  await bundleEsmPage();
}
