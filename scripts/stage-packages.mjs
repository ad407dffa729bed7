#!/usr/bin/env node
// Copies the build (dist/) into the two publishable packages, the last step of
// `npm run build`:
//
//   packages/tidings         the browser SDK: ESM, CJS, types for each
//                            condition, the <script> build, tidings/react
//   packages/tidings-server  the companion server: compiled server, demo
//                            assets, the SDK build the demo page loads
//
// The sources stay where they are (src/, server/): the packages hold only what
// ships, so `npm pack` in a package can never pick up tests, benchmarks or the
// other package's code. Everything written here is git-ignored.
//
// `--check` (the packages' prepack) verifies that a build was staged, and runs
// it when nothing was, so `npm pack` works from a fresh clone too.
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const sdk = join(root, 'packages/tidings');
const server = join(root, 'packages/tidings-server');

/** The SDK's entry points, as rollup.config.mjs names them in dist/. */
const SDK_ENTRIES = ['tidings', 'react'];

/** Files every package carries beside its own README. */
const COMMON = [
  ['LICENSE', 'LICENSE'],
  ['CHANGELOG.md', 'CHANGELOG.md'],
  ['docs/protocol.md', 'PROTOCOL.md'],
];

/** What each package must hold after staging (checked by --check and at the end of a build). */
const REQUIRED = {
  [sdk]: [...SDK_ENTRIES.flatMap((e) => [`dist/${e}.mjs`, `dist/${e}.cjs`, `dist/${e}.d.mts`, `dist/${e}.d.cts`]), 'dist/tidings.d.ts', 'dist/tidings.min.js', 'LICENSE', 'CHANGELOG.md', 'PROTOCOL.md'],
  [server]: ['dist/server/main.js', 'server/demo/index.html', 'dist/tidings.min.js', 'LICENSE', 'CHANGELOG.md', 'PROTOCOL.md'],
};

function missing() {
  const out = [];
  for (const [pkg, files] of Object.entries(REQUIRED)) for (const f of files) if (!existsSync(join(pkg, f))) out.push(relative(root, join(pkg, f)));
  return out;
}

function copy(from, to) {
  mkdirSync(dirname(to), { recursive: true });
  copyFileSync(from, to);
}

function stage() {
  const dist = join(root, 'dist');
  for (const f of ['dist/tidings.mjs', 'dist/server/main.js']) {
    if (!existsSync(join(root, f))) throw new Error(`${f} is missing: run rollup -c and tsc -p tsconfig.server.json first (npm run build does both)`);
  }

  // The SDK. One bundled declaration file per entry serves three resolutions:
  // .d.mts for `import`, .d.cts for `require` (a CommonJS consumer must not see
  // ESM types: "masquerading as ESM"), and .d.ts for node10's `types` field.
  // The contents are identical because every entry has named exports only.
  rmSync(join(sdk, 'dist'), { recursive: true, force: true });
  for (const entry of SDK_ENTRIES) {
    for (const ext of ['mjs', 'cjs']) {
      copy(join(dist, `${entry}.${ext}`), join(sdk, 'dist', `${entry}.${ext}`));
      if (existsSync(join(dist, `${entry}.${ext}.map`))) copy(join(dist, `${entry}.${ext}.map`), join(sdk, 'dist', `${entry}.${ext}.map`));
    }
    const dts = readFileSync(join(dist, `${entry}.d.ts`), 'utf8');
    for (const ext of ['d.mts', 'd.cts', 'd.ts']) writeFileSync(join(sdk, 'dist', `${entry}.${ext}`), dts);
  }
  for (const f of ['tidings.min.js', 'tidings.min.js.map']) copy(join(dist, f), join(sdk, 'dist', f));

  // The server: compiled JS without source maps (their sources are not shipped),
  // the demo page's static files, and the SDK build that page loads. The layout
  // mirrors the repository's (dist/server/, server/demo/, dist/tidings.min.js),
  // so server/demo/assets.ts finds its files from the package root exactly as it
  // does from the checkout.
  rmSync(join(server, 'dist'), { recursive: true, force: true });
  rmSync(join(server, 'server'), { recursive: true, force: true });
  cpSync(join(dist, 'server'), join(server, 'dist/server'), { recursive: true, filter: (src) => !src.endsWith('.map') });
  for (const name of readdirSync(join(root, 'server/demo'))) {
    if (/\.(html|css|js)$/.test(name)) copy(join(root, 'server/demo', name), join(server, 'server/demo', name));
  }
  for (const f of ['tidings.min.js', 'tidings.min.js.map', 'tidings.mjs']) copy(join(dist, f), join(server, 'dist', f));

  for (const pkg of [sdk, server]) for (const [from, to] of COMMON) copy(join(root, from), join(pkg, to));

  const lost = missing();
  if (lost.length) throw new Error(`staging left out: ${lost.join(', ')}`);
  const count = (dir) => readdirSync(dir, { recursive: true }).filter((f) => statSync(join(dir, f)).isFile()).length;
  console.log(`staged packages/tidings (${count(join(sdk, 'dist'))} files in dist) and packages/tidings-server (${count(join(server, 'dist'))} files in dist)`);
}

if (process.argv.includes('--check')) {
  // The packages' prepack: a pack straight after `npm ci` (nothing built yet)
  // builds first, instead of failing or packing a package without code. The
  // build's output goes to stderr: `npm pack --json` keeps a clean stdout.
  if (missing().length) {
    console.error('packages/ hold no build yet: running `npm run build` at the repository root first');
    const r = spawnSync('npm', ['run', '--silent', 'build'], { cwd: root, stdio: ['ignore', 2, 2] });
    const lost = missing();
    if (r.status !== 0 || lost.length) {
      console.error(`Nothing to pack: ${lost.join(', ') || 'the build failed'}.\nRun \`npm run build\` at the repository root and fix what it reports.`);
      process.exit(1);
    }
  }
} else {
  stage();
}
