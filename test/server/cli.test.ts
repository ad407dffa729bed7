// tidings-server token | publish | --version (server/cli.ts), in process with
// captured output, plus the built entry point as a child process.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { runSubcommand, parseTtl, type CliIO } from '../../server/cli.js';
import { verifySubscriberToken } from '../../server/auth/tokens.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { TEST_PUBLISHER_KEY, TEST_SUBSCRIBER_SECRET } from '../support/context.js';

const root = path.resolve(import.meta.dirname, '../..');
const pkg = (await import('../../package.json', { with: { type: 'json' } })).default as { version: string };

function io(env: Record<string, string> = {}): CliIO & { stdout: string; stderr: string } {
  const o = {
    stdout: '', stderr: '', env, fetch: (i: RequestInfo | URL, init?: RequestInit) => fetch(i, init), now: () => Date.now(),
    out(t: string) { o.stdout += t; }, err(t: string) { o.stderr += t; },
  };
  return o;
}

let servers: TestServer[] = [];
afterEach(async () => { await Promise.all(servers.map((s) => s.close())); servers = []; });

describe('tidings-server token', () => {
  it('mints a token for --sub and every --channel, valid --ttl, verifiable with the configured secret', async () => {
    const o = io({ TIDINGS_SUBSCRIBER_SECRET: TEST_SUBSCRIBER_SECRET });
    const t0 = Math.floor(Date.now() / 1000);
    expect(await runSubcommand(['token', '--sub', '42', '--channel', 'user:42', '--channel', 'news', '--ttl', '2h'], o)).toBe(0);
    const claims = await verifySubscriberToken(TEST_SUBSCRIBER_SECRET, o.stdout.trim());
    expect(claims.sub).toBe('42');
    expect(claims.ch).toEqual(['user:42', 'news']);
    expect(claims.exp - t0).toBeGreaterThanOrEqual(7199);
    expect(claims.exp - t0).toBeLessThanOrEqual(7201);
    expect(o.stdout + o.stderr).not.toContain(TEST_SUBSCRIBER_SECRET);
  });

  it('signs with the first secret of TIDINGS_SUBSCRIBER_SECRETS and its kid', async () => {
    const o = io({ TIDINGS_SUBSCRIBER_SECRETS: `k2:${TEST_SUBSCRIBER_SECRET}-new,k1:${TEST_SUBSCRIBER_SECRET}` });
    expect(await runSubcommand(['token', '--sub', 'u', '--channel', 'a'], o)).toBe(0);
    const header = JSON.parse(Buffer.from(o.stdout.split('.')[0]!, 'base64url').toString());
    expect(header.kid).toBe('k2');
    await verifySubscriberToken(`${TEST_SUBSCRIBER_SECRET}-new`, o.stdout.trim());
  });

  it('exits 2 with an actionable message: no secret configured, missing --sub or --channel, bad channel, bad ttl', async () => {
    const cases: [string[], Record<string, string>, RegExp][] = [
      [['token', '--sub', 'u', '--channel', 'a'], {}, /no subscriber secret configured: set TIDINGS_SUBSCRIBER_SECRET/],
      [['token', '--channel', 'a'], { TIDINGS_SUBSCRIBER_SECRET: TEST_SUBSCRIBER_SECRET }, /--sub is required/],
      [['token', '--sub', 'u'], { TIDINGS_SUBSCRIBER_SECRET: TEST_SUBSCRIBER_SECRET }, /at least one --channel/],
      [['token', '--sub', 'u', '--channel', 'a b'], { TIDINGS_SUBSCRIBER_SECRET: TEST_SUBSCRIBER_SECRET }, /bad channel name "a b"/],
      [['token', '--sub', 'u', '--channel', 'a', '--ttl', '1y'], { TIDINGS_SUBSCRIBER_SECRET: TEST_SUBSCRIBER_SECRET }, /--ttl must be/],
      [['token', '--bogus'], {}, /Unknown option '--bogus'/],
    ];
    for (const [argv, env, msg] of cases) {
      const o = io(env);
      expect(await runSubcommand(argv, o), argv.join(' ')).toBe(2);
      expect(o.stderr).toMatch(msg);
      expect(o.stdout).toBe('');
    }
  });

  it('parseTtl', () => {
    expect([parseTtl('90'), parseTtl('90s'), parseTtl('30m'), parseTtl('1h'), parseTtl('7d')]).toEqual([90, 90, 1800, 3600, 604800]);
    expect(() => parseTtl('0')).toThrow(/at least 1/);
  });
});

describe('tidings-server publish', () => {
  it('publishes through a running server and prints its answer', async () => {
    const s = await startTestServer();
    servers.push(s);
    const o = io({ TIDINGS_PUBLISHER_KEY: TEST_PUBLISHER_KEY, TIDINGS_URL: s.url });
    expect(await runSubcommand(['publish', 'user:42', '{"unread":3}'], o)).toBe(0);
    const { cursor } = JSON.parse(o.stdout);
    expect((await s.ctx.bus.readAfter('user:42', `${cursor.split('-')[0]}-0`))).toMatchObject({ kind: 'events', events: [{ json: '{"unread":3}' }] });
    expect(o.stdout + o.stderr).not.toContain(TEST_PUBLISHER_KEY);
  });

  it('exits 1 with the server\'s error (wrong key) and when the server is unreachable; 2 on bad JSON', async () => {
    const s = await startTestServer();
    servers.push(s);
    const wrong = io({ TIDINGS_PUBLISHER_KEY: 'a-wrong-key-0123456789abcdef', TIDINGS_URL: s.url });
    expect(await runSubcommand(['publish', 'a', '1'], wrong)).toBe(1);
    expect(wrong.stderr).toContain('401');
    expect(wrong.stderr).not.toContain('a-wrong-key');
    const down = io({ TIDINGS_PUBLISHER_KEY: TEST_PUBLISHER_KEY });
    expect(await runSubcommand(['publish', 'a', '1', '--url', 'http://127.0.0.1:1'], down)).toBe(1);
    expect(down.stderr).toContain('cannot reach http://127.0.0.1:1');
    const bad = io({ TIDINGS_PUBLISHER_KEY: TEST_PUBLISHER_KEY });
    expect(await runSubcommand(['publish', 'a', '{unread:3}'], bad)).toBe(2);
    expect(bad.stderr).toContain('JSON');
  });
});

describe('the entry point', () => {
  const run = (args: string[], env: Record<string, string> = {}) => promisify(execFile)(
    path.join(root, 'node_modules/.bin/tsx'), [path.join(root, 'server/main.ts'), ...args],
    { cwd: root, env: { PATH: `${path.join(root, 'node_modules/.bin')}:${process.env.PATH}`, ...env } },
  );

  it('--version prints the package version', async () => {
    const { stdout } = await run(['--version']);
    expect(stdout).toBe(`tidings-server ${pkg.version}\n`);
  });

  it('token goes to stdout, nothing else', async () => {
    const { stdout, stderr } = await run(['token', '--sub', 'u', '--channel', 'a'], { TIDINGS_SUBSCRIBER_SECRET: TEST_SUBSCRIBER_SECRET });
    expect(stdout).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+\n$/);
    expect(stderr).toBe('');
  });
});
