/**
 * The two npm packages, checked as a new user meets them: `npm pack` each
 * (from the build `npm run build` staged into packages/), install the tarballs
 * into fresh apps in a temp dir, and use them there:
 *
 * - the SDK installs with no dependencies at all, and carries no server file;
 * - arethetypeswrong (every entry point, every resolution) and publint find
 *   nothing;
 * - a strict consumer type-checks under moduleResolution bundler, nodenext (ESM),
 *   node16 (a CommonJS .cts file) and node10;
 * - `import` and `require` of `tidings` and `tidings/react` load, and a React
 *   tree rendered on the server creates no client;
 * - an app bundled with esbuild connects to the server installed from its own
 *   tarball and receives a published event;
 * - `npx tidings-server --help` runs, and the installed server's demo page and
 *   its assets load; the <script> build defines window.Tidings.
 *
 * Runs with its own config (vitest.packages.config.ts) after the build: it packs
 * what `npm run build` staged and never rebuilds. Installs use the npm cache
 * first (`--prefer-offline`): the repository's own install has put every
 * dependency of both packages there.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire, isBuiltin } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { runInNewContext } from 'node:vm';
import { gzipSync } from 'node:zlib';
import { build, transform } from 'esbuild';
import { publint } from 'publint';
import { formatMessage } from 'publint/utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signSubscriberToken } from '../../server/auth/tokens.js';

const run = promisify(execFile);
const root = resolve(import.meta.dirname, '../..');
const requireHere = createRequire(import.meta.url);
const tsc = requireHere.resolve('typescript/bin/tsc');
const attw = join(root, 'node_modules/@arethetypeswrong/cli/dist/index.js');
const node = process.execPath;
const SECRET = 'packages-test-subscriber-secret-0123456789';
const PUBLISHER_KEY = 'packages-test-publisher-key-0123456789';

/** Budget of tidings/react (dist/react.mjs) minified as an app's bundler would, gzip -9, bytes. */
const REACT_GZIP_LIMIT = 1024;

interface Packed {
  filename: string;
  size: number;
  unpackedSize: number;
  entryCount: number;
  files: { path: string; size: number }[];
  tarball: string;
}

let work: string;
let sdk: Packed;
let server: Packed;
/** An app with only the SDK tarball installed (then react, for the React checks). */
let sdkApp: string;
let sdkTreeBeforeReact: string[];
let sdkLsOmitDev: { dependencies?: Record<string, { dependencies?: unknown }> };
/** An app with only the server tarball installed. */
let serverApp: string;

async function sh(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<string> {
  try {
    const { stdout } = await run(cmd, args, { cwd, env: { ...process.env, ...env }, maxBuffer: 64 << 20 });
    return stdout;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} (in ${cwd}) failed: ${e.message}\n${e.stdout ?? ''}\n${e.stderr ?? ''}`);
  }
}

async function pack(dir: string): Promise<Packed> {
  const out = await sh('npm', ['pack', '--json', '--pack-destination', work], join(root, dir));
  const [info] = JSON.parse(out) as Omit<Packed, 'tarball'>[];
  return { ...info!, tarball: join(work, info!.filename) };
}

function app(name: string, type: 'module' | 'commonjs' = 'module'): string {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name, private: true, type }, null, 2));
  return dir;
}

const npmInstall = (cwd: string, specs: string[]) =>
  sh('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', '--loglevel=error', ...specs], cwd);

/** The version the repository itself uses, so the install is served from the npm cache. */
const repoVersion = (pkg: string) => (JSON.parse(readFileSync(join(root, 'node_modules', pkg, 'package.json'), 'utf8')) as { version: string }).version;

beforeAll(async () => {
  for (const f of ['packages/tidings/dist/tidings.mjs', 'packages/tidings-server/dist/server/main.js']) {
    if (!existsSync(join(root, f))) throw new Error(`${f} is missing: run \`npm run build\` first (npm test does)`);
  }
  work = mkdtempSync(join(tmpdir(), 'tidings-packages-'));
  [sdk, server] = await Promise.all([pack('packages/tidings'), pack('packages/tidings-server')]);
  console.log(`npm pack: ${sdk.filename} ${sdk.size} B, ${sdk.entryCount} files (unpacked ${sdk.unpackedSize} B); ` +
    `${server.filename} ${server.size} B, ${server.entryCount} files (unpacked ${server.unpackedSize} B)`);

  sdkApp = app('sdk-app');
  serverApp = app('server-app');
  await Promise.all([npmInstall(sdkApp, [sdk.tarball]), npmInstall(serverApp, [server.tarball])]);
  sdkTreeBeforeReact = readdirSync(join(sdkApp, 'node_modules')).filter((f) => !f.startsWith('.'));
  sdkLsOmitDev = JSON.parse(await sh('npm', ['ls', '--omit=dev', '--all', '--json'], sdkApp));
  await npmInstall(sdkApp, [`react@${repoVersion('react')}`, `react-dom@${repoVersion('react-dom')}`]);
}, 300_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** Bare module specifiers (package names) that `files` import, builtins left out. */
function importedPackages(dir: string, files: string[]): string[] {
  const names = new Set<string>();
  for (const f of files) {
    const code = readFileSync(join(dir, f), 'utf8');
    for (const m of code.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+|\brequire\s*\(\s*)['"]([^'"]+)['"]/g)) {
      const spec = m[1]!;
      if (spec.startsWith('.') || isBuiltin(spec)) continue;
      names.add(spec.split('/').slice(0, spec.startsWith('@') ? 2 : 1).join('/'));
    }
  }
  return [...names].sort();
}

describe('tidings (the SDK package)', () => {
  it('holds the builds, types, LICENSE, README, CHANGELOG and PROTOCOL.md, and nothing of the server', () => {
    const files = sdk.files.map((f) => f.path).sort();
    const entry = (name: string) => [`${name}.mjs`, `${name}.mjs.map`, `${name}.cjs`, `${name}.cjs.map`, `${name}.d.mts`, `${name}.d.cts`, `${name}.d.ts`].map((f) => `dist/${f}`);
    expect(files).toEqual(
      [...entry('tidings'), ...entry('react'), 'dist/tidings.min.js', 'dist/tidings.min.js.map',
        'CHANGELOG.md', 'LICENSE', 'PROTOCOL.md', 'README.md', 'package.json', 'react/package.json'].sort(),
    );
    const manifest = JSON.parse(readFileSync(join(sdkApp, 'node_modules/tidings/package.json'), 'utf8'));
    expect(manifest.dependencies).toBeUndefined();
    expect(manifest.sideEffects).toBe(false);
    expect(manifest.license).toBe('MIT');
    expect(manifest.repository?.url).toMatch(/^git\+https:/);
    expect(manifest.homepage).toMatch(/^https:/);
    expect(manifest.peerDependenciesMeta?.react?.optional).toBe(true);
    expect(readFileSync(join(sdkApp, 'node_modules/tidings/LICENSE'), 'utf8')).toMatch(/^MIT License/);
    expect(readFileSync(join(sdkApp, 'node_modules/tidings/PROTOCOL.md'), 'utf8')).toBe(readFileSync(join(root, 'docs/protocol.md'), 'utf8'));
  });

  it('installs with no dependencies: npm ls --omit=dev lists the SDK alone', () => {
    expect(sdkTreeBeforeReact).toEqual(['tidings']);
    expect(Object.keys(sdkLsOmitDev.dependencies ?? {})).toEqual(['tidings']);
    // npm ls names the optional peer `react` as "UNMET OPTIONAL" (an empty entry): nothing installed.
    const below = Object.entries(sdkLsOmitDev.dependencies!.tidings!.dependencies ?? {});
    expect(below.filter(([, d]) => Object.keys(d as object).length > 0)).toEqual([]);
    expect(below.map(([name]) => name).filter((n) => n !== 'react')).toEqual([]);
    // What the code imports: the optional peer, from tidings/react only (its types alone come from `tidings`).
    const js = sdk.files.map((f) => f.path).filter((f) => /\.(mjs|cjs)$/.test(f));
    expect(importedPackages(join(sdkApp, 'node_modules/tidings'), js.filter((f) => !f.includes('react')))).toEqual([]);
    expect(importedPackages(join(sdkApp, 'node_modules/tidings'), js)).toEqual(['react']);
  });

  it('arethetypeswrong finds no problem in any entry point under any resolution', async () => {
    // Exit status 0 means no problem (the default profile covers node10, node16 CJS and ESM, bundler).
    const table = await sh(node, [attw, sdk.tarball, '--format', 'table-flipped'], work);
    expect(table).toMatch(/"tidings\/react"/);
    expect(table).not.toMatch(/❌|💀|⚠️/u);
  });

  it('publint reports nothing, for both packages', async () => {
    for (const p of [sdk, server]) {
      const tarball = readFileSync(p.tarball);
      const { messages, pkg } = await publint({ pack: { tarball: tarball.buffer.slice(tarball.byteOffset, tarball.byteOffset + tarball.byteLength) as ArrayBuffer }, level: 'suggestion' });
      expect(messages.map((m) => formatMessage(m, pkg)), p.filename).toEqual([]);
    }
  });

  it('type-checks a strict consumer under moduleResolution bundler, nodenext, node16 (CommonJS .cts) and node10', async () => {
    const dir = sdkApp;
    const consumer = `
import { createClient, TidingsError, type Client, type EventMessage, type State } from 'tidings';
import { useChannel, useConnectionState, useTidingsClient } from 'tidings/react';

const client: Client = createClient({ url: 'https://mail.example.com', token: () => 'jwt', channels: ['user:42'] });
client.on('event', (e: EventMessage) => console.log(e.channel, e.cursor, e.data));
client.on('state', (s: State) => console.log(s));
const err: unknown = null;
if (err instanceof TidingsError) console.log(err.code);
export const hooks = [useChannel, useConnectionState, useTidingsClient] as const;
// @ts-expect-error: not an option
createClient({ url: 'x', token: 't', channels: [], nope: 1 });
`;
    writeFileSync(join(dir, 'esm.ts'), consumer);
    writeFileSync(join(dir, 'cjs.cts'), consumer);
    writeFileSync(join(dir, 'node10.ts'), consumer);
    const base = { strict: true, noEmit: true, skipLibCheck: false, target: 'es2022', lib: ['es2023', 'dom'], types: [] };
    const configs: Record<string, object> = {
      bundler: { compilerOptions: { ...base, module: 'esnext', moduleResolution: 'bundler' }, files: ['esm.ts'] },
      nodenext: { compilerOptions: { ...base, module: 'nodenext', moduleResolution: 'nodenext' }, files: ['esm.ts', 'cjs.cts'] },
      node16: { compilerOptions: { ...base, module: 'node16', moduleResolution: 'node16' }, files: ['cjs.cts', 'esm.ts'] },
      node10: { compilerOptions: { ...base, module: 'commonjs', moduleResolution: 'node10' }, files: ['node10.ts'] },
    };
    const results = await Promise.all(
      Object.entries(configs).map(async ([name, cfg]) => {
        writeFileSync(join(dir, `tsconfig.${name}.json`), JSON.stringify(cfg));
        return run(node, [tsc, '-p', `tsconfig.${name}.json`], { cwd: dir }).then(
          () => `${name}: ok`,
          (e: { stdout: string }) => `${name}: ${e.stdout}`,
        );
      }),
    );
    expect(results).toEqual(Object.keys(configs).map((n) => `${n}: ok`));
  });

  it('loads with import and require (tidings and tidings/react), and a React tree rendered on the server creates no client', async () => {
    writeFileSync(join(sdkApp, 'load.cjs'), `
const t = require('tidings');
const r = require('tidings/react');
console.log(JSON.stringify({ cjs: [typeof t.createClient, typeof t.TidingsError, typeof r.useChannel, typeof r.useConnectionState, typeof r.useTidingsClient] }));
`);
    writeFileSync(join(sdkApp, 'load.mjs'), `
import { createClient, TidingsError } from 'tidings';
import { useChannel, useConnectionState, useTidingsClient } from 'tidings/react';
import { createElement } from 'react';
import { renderToString } from 'react-dom/server';
let created = 0;
function Inbox() {
  const client = useTidingsClient(() => { created++; return createClient({ url: 'http://127.0.0.1:9', token: 't', channels: ['a'] }); });
  const state = useConnectionState(client);
  useChannel(client, 'a', () => {});
  return createElement('p', null, 'state=' + String(state));
}
const html = renderToString(createElement(Inbox));
await new Promise((r) => setTimeout(r, 50));
console.log(JSON.stringify({ esm: [typeof createClient, typeof TidingsError, typeof useChannel, typeof useConnectionState, typeof useTidingsClient], html, created }));
`);
    const cjs = JSON.parse(await sh(node, ['load.cjs'], sdkApp));
    const esm = JSON.parse(await sh(node, ['load.mjs'], sdkApp));
    expect(cjs.cjs).toEqual(['function', 'function', 'function', 'function', 'function']);
    expect(esm.esm).toEqual(['function', 'function', 'function', 'function', 'function']);
    expect(esm.html).toBe('<p>state=null</p>');
    expect(esm.created).toBe(0);
  });

  it('a React app built with Vite from the installed packages bundles the client and the hooks, with no server code', async () => {
    const dir = join(sdkApp, 'vite-app');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'index.html'), '<!doctype html><div id="root"></div><script type="module" src="./main.ts"></script>\n');
    writeFileSync(join(dir, 'main.ts'), `
import { createClient } from 'tidings';
import { useChannel, useConnectionState, useTidingsClient } from 'tidings/react';
import { createElement } from 'react';
import { createRoot } from 'react-dom/client';
function Inbox() {
  const client = useTidingsClient(() => createClient({ url: location.origin, token: 'jwt', channels: ['user:42'] }));
  useChannel(client, 'news', (e) => console.log(e.data));
  return createElement('p', null, String(useConnectionState(client)));
}
createRoot(document.getElementById('root')!).render(createElement(Inbox));
`);
    const { build: viteBuild } = await import('vite');
    await viteBuild({ root: dir, logLevel: 'silent', configFile: false, build: { outDir: join(dir, 'dist'), minify: true } });
    const assets = readdirSync(join(dir, 'dist/assets')).filter((f) => f.endsWith('.js'));
    const code = assets.map((f) => readFileSync(join(dir, 'dist/assets', f), 'utf8')).join('\n');
    expect(code).not.toMatch(/ioredis|prom-client|pino/);
    expect(code).toContain('/v1/ws'); // the client is in
    expect(code).toContain('useSyncExternalStore'); // and React with the hooks
  });

  it('the <script> build defines window.Tidings with no module loader', () => {
    const code = readFileSync(join(sdkApp, 'node_modules/tidings/dist/tidings.min.js'), 'utf8');
    const window: Record<string, unknown> = {};
    runInNewContext(`${code}\nwindow.Tidings = Tidings;`, { window });
    expect(typeof (window.Tidings as { createClient?: unknown }).createClient).toBe('function');
    expect(code).toMatch(/sourceMappingURL=tidings\.min\.js\.map/);
  });

  it(`tidings/react stays within ${REACT_GZIP_LIMIT} B minified + gzip -9 and bundles neither react nor the client`, async () => {
    const code = readFileSync(join(sdkApp, 'node_modules/tidings/dist/react.mjs'), 'utf8');
    // What an app's bundler makes of it (the shipped file keeps its doc comments).
    const { code: min } = await transform(code, { minify: true, format: 'esm' });
    const gz = (s: string) => gzipSync(s, { level: 9 }).length;
    console.log(`tidings/react: dist/react.mjs ${code.length} B (${gz(code)} B gzip -9), minified ${min.length} B (${gz(min)} B gzip -9)`);
    expect(gz(min)).toBeLessThanOrEqual(REACT_GZIP_LIMIT);
    expect(code).toMatch(/from 'react'/);
    expect(code).not.toMatch(/ReconnectingWebSocket/);
  });
});

describe('tidings-server (the server package)', () => {
  let proc: ChildProcess | null = null;
  let url = '';

  beforeAll(async () => {
    const bin = join(serverApp, 'node_modules/.bin/tidings-server');
    proc = spawn(bin, ['--demo', '--port', '0', '--log-level', 'warn'], {
      cwd: serverApp,
      env: { ...process.env, TIDINGS_SUBSCRIBER_SECRET: SECRET, TIDINGS_PUBLISHER_KEY: PUBLISHER_KEY },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let output = '';
    url = await new Promise<string>((ok, fail) => {
      const timer = setTimeout(() => fail(new Error(`installed tidings-server did not start:\n${output}`)), 30_000);
      const read = (b: Buffer) => {
        output += b;
        const m = /listening on (http:\/\/\S+)/.exec(output);
        if (m) clearTimeout(timer), ok(m[1]!);
      };
      proc!.stdout!.on('data', read);
      proc!.stderr!.on('data', read);
      proc!.on('exit', (code) => fail(new Error(`installed tidings-server exited ${code}:\n${output}`)));
    });
  }, 60_000);

  afterAll(() => {
    if (proc?.pid && proc.exitCode === null && proc.signalCode === null) process.kill(-proc.pid, 'SIGKILL');
  });

  it('holds its bin, the compiled server and the demo assets, and no SDK source or test', () => {
    const files = server.files.map((f) => f.path);
    for (const f of ['bin/tidings-server.js', 'dist/server/main.js', 'server/demo/index.html', 'server/demo/app.js', 'server/demo/app.css', 'dist/tidings.min.js', 'LICENSE', 'README.md', 'CHANGELOG.md', 'PROTOCOL.md']) {
      expect(files, f).toContain(f);
    }
    expect(files.filter((f) => /^(src|test|e2e|bench|packages)\/|\.ts$/.test(f))).toEqual([]);
  });

  it('declares every package its code imports as a dependency, and no other', () => {
    const dir = join(serverApp, 'node_modules/tidings-server');
    const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
    const js = server.files.map((f) => f.path).filter((f) => f.startsWith('dist/server/') && f.endsWith('.js'));
    expect(importedPackages(dir, js)).toEqual(Object.keys(manifest.dependencies).sort());
  });

  it('npx tidings-server --help runs from the installed tarball', async () => {
    const help = await sh('npx', ['--no-install', 'tidings-server', '--help'], serverApp);
    expect(help).toMatch(/^Usage: tidings-server/);
    expect(help).toMatch(/--demo/);
  });

  it('serves its demo page, the demo assets and the SDK build from the installed package', async () => {
    for (const [path, type, text] of [
      ['/', 'text/html', 'tidings.min.js'],
      ['/demo/app.js', 'text/javascript', ''],
      ['/demo/app.css', 'text/css', ''],
      ['/tidings.min.js', 'text/javascript', 'Tidings'],
    ] as const) {
      const res = await fetch(url + path);
      expect(res.status, path).toBe(200);
      expect(res.headers.get('content-type'), path).toContain(type);
      expect(await res.text(), path).toContain(text);
    }
  });

  it('an app bundled with esbuild from the installed SDK receives what the installed server publishes', async () => {
    writeFileSync(join(sdkApp, 'app.ts'), `
import { createClient } from 'tidings';
// Run by Node here; a page would take these from its own config.
const env = (globalThis as unknown as { process: { env: Record<string, string> } }).process.env;
const client = createClient({ url: env.URL!, token: env.TOKEN!, channels: ['user:42'] });
client.on('state', (s) => { if (s === 'open') console.log('open'); });
client.on('event', (e) => { console.log(JSON.stringify(e.data)); client.close(); });
`);
    const out = await build({ entryPoints: [join(sdkApp, 'app.ts')], bundle: true, format: 'esm', platform: 'browser', minify: true, write: false, absWorkingDir: sdkApp });
    const bundle = out.outputFiles[0]!.text;
    expect(bundle).not.toMatch(/ioredis|prom-client|pino/);
    writeFileSync(join(sdkApp, 'bundle.mjs'), bundle);
    const token = await signSubscriberToken(SECRET, { sub: 'u42', ch: ['user:42'], ttlSeconds: 300 });
    const child = spawn(node, ['bundle.mjs'], { cwd: sdkApp, env: { ...process.env, URL: url, TOKEN: token }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (b) => (stderr += b));
    const opened = new Promise<void>((ok) => child.stdout.on('data', (b) => ((stdout += b), stdout.includes('open') && ok())));
    const exited = new Promise<number | null>((ok) => child.on('exit', (code) => ok(code)));
    await Promise.race([opened, exited]);
    const res = await fetch(`${url}/v1/publish`, {
      method: 'POST',
      headers: { authorization: `Bearer ${PUBLISHER_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ channel: 'user:42', data: { unread: 3 } }),
    });
    expect(res.status).toBe(200);
    expect(await exited, stderr).toBe(0);
    expect(stdout.trim().split('\n')).toEqual(['open', '{"unread":3}']);
  });
});
