#!/usr/bin/env node
// `npm test`: every suite, then one plain closing line `N passed, N failed`
// summing them (CI reads only that line; vitest's and Playwright's own
// summaries are not recognised there).
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';

const tmp = '.tmp/test';
rmSync(tmp, { recursive: true, force: true });
mkdirSync(tmp, { recursive: true });
const env = { ...process.env, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: '1' };
const only = process.argv[2]; // optional: unit | e2e

function run(cmd, args, extraEnv = {}) {
  console.log(`\n$ ${[cmd, ...args].join(' ')}`);
  return spawnSync(cmd, args, { stdio: 'inherit', env: { ...env, ...extraEnv } }).status ?? 1;
}
function readJson(path) {
  try { return JSON.parse(readFileSync(path, 'utf8')); } catch { return null; }
}

let passed = 0;
let failed = 0;
console.log(`node ${process.version}`);
if (!process.version.startsWith('v24.')) {
  console.error('npm test expects the pinned Node 24 (node_modules/.bin/node); run it through npm.');
  failed++;
}

if (run('bash', ['scripts/ensure-system-deps.sh']) !== 0) failed++;

// Types are a suite of their own: the SDK and server are `strict`.
if (run('tsc', ['-p', 'tsconfig.json', '--noEmit']) === 0) passed++; else failed++;
// The build is a precondition of the size check and the e2e suite.
const built = run('npm', ['run', '--silent', 'build']) === 0;
if (built) passed++; else failed++;

/** One vitest run with a JSON report, added to the totals. */
function vitest(args, report) {
  const code = run('vitest', ['run', ...args, '--reporter=default', '--reporter=json', `--outputFile.json=${tmp}/${report}`]);
  const r = readJson(`${tmp}/${report}`);
  if (r) {
    passed += r.numPassedTests;
    failed += r.numFailedTests;
    // A test file that failed to load has no tests in the counts: count it.
    for (const f of r.testResults ?? []) if (f.status === 'failed' && (f.assertionResults ?? []).length === 0) failed++;
  }
  if (!r || (code !== 0 && r.numFailedTests === 0)) failed++;
}

if (only !== 'e2e') vitest([], 'vitest.json');
// The SDK behaviour suites again, on the shipped dist/tidings.min.js (vitest.bundle.config.ts).
if (only !== 'e2e') {
  if (built) vitest(['--config', 'vitest.bundle.config.ts'], 'vitest-bundle.json');
  else failed++;
}
// The packages as users get them: packs what the build staged, installs the tarballs (test/packages/).
if (only !== 'e2e') {
  if (built) vitest(['--config', 'vitest.packages.config.ts'], 'vitest-packages.json');
  else failed++;
}

if (only !== 'unit' && built) {
  const code = run('playwright', ['test', '--reporter=list,json'], { PLAYWRIGHT_JSON_OUTPUT_NAME: `${tmp}/playwright.json` });
  const r = readJson(`${tmp}/playwright.json`);
  if (r?.stats) {
    passed += r.stats.expected + r.stats.flaky;
    failed += r.stats.unexpected;
    if (r.stats.flaky) console.log(`(${r.stats.flaky} e2e test(s) passed only on retry)`);
  }
  if (!r?.stats || (code !== 0 && r.stats.unexpected === 0)) failed++;
}

console.log(`\n${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
