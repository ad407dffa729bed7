/**
 * A fleet of SDK clients (src/, on Node's own WebSocket and fetch, real
 * timers, default options) through a crash of a real server process
 * (SIGKILL) and a restart 1.6 s later on the same port. Issue 9 defect 1: the
 * first-generation SDK counted every refused attempt toward `fallbackAfter`
 * and left most of such a fleet on polling. Now every client must be back on
 * WebSocket, and nothing published after the restart may be lost.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { signSubscriberToken } from '../../server/auth/tokens.js';
import { createClient, type Client } from '../../src/index.js';
import { TEST_PUBLISHER_KEY, TEST_SUBSCRIBER_SECRET } from '../support/context.js';
import { freePort } from '../support/redis.js';

const CLIENTS = 40;
const CHANNELS = 4;
const root = path.resolve(import.meta.dirname, '../..');
const children: ChildProcess[] = [];

function startServer(port: number): Promise<ChildProcess> {
  const child = spawn(path.join(root, 'node_modules/.bin/tsx'), [path.join(root, 'server/main.ts')], {
    cwd: root,
    env: {
      PATH: `${path.join(root, 'node_modules/.bin')}:${process.env.PATH}`,
      TIDINGS_PORT: String(port),
      TIDINGS_SUBSCRIBER_SECRET: TEST_SUBSCRIBER_SECRET,
      TIDINGS_PUBLISHER_KEY: TEST_PUBLISHER_KEY,
      TIDINGS_LOG_LEVEL: 'silent',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
    // Its own process group (tsx runs the server in a child): killed whole.
    detached: true,
  });
  children.push(child);
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('listening on')) resolve(child);
    });
    child.on('exit', (code) => reject(new Error(`server exited (${code}) before listening: ${out}`)));
  });
}
const kill = (c: ChildProcess) => {
  try {
    process.kill(-c.pid!, 'SIGKILL');
  } catch {
    /* gone */
  }
};
afterAll(() => children.forEach(kill));

const until = async (what: () => boolean, ms: number) => {
  const end = Date.now() + ms;
  while (!what() && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
};

describe('fleet through a server crash and restart', () => {
  it(`${CLIENTS} clients: all back on WebSocket, nothing published after the restart lost`, async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    let server = await startServer(port);
    const publish = async (channel: string, data: unknown) => {
      const r = await fetch(url + '/v1/publish', { method: 'POST', headers: { Authorization: 'Bearer ' + TEST_PUBLISHER_KEY, 'Content-Type': 'application/json' }, body: JSON.stringify({ channel, data }) });
      expect(r.status).toBe(200);
    };
    const fleet: { c: Client; ch: string; got: unknown[]; resets: number; polled: boolean }[] = [];
    for (let i = 0; i < CLIENTS; i++) {
      const ch = `fleet:${i % CHANNELS}`;
      const token = await signSubscriberToken(TEST_SUBSCRIBER_SECRET, { sub: `u${i}`, ch: [ch], ttlSeconds: 600 });
      const f = { c: createClient({ url, token, channels: [ch] }), ch, got: [] as unknown[], resets: 0, polled: false };
      f.c.on('event', (e) => f.got.push(e.data));
      f.c.on('state', (s) => void (s === 'polling' && (f.polled = true)));
      f.c.on('reset', () => f.resets++);
      fleet.push(f);
    }
    const allOn = (t: string) => fleet.every((f) => f.c.transport === t);
    await until(() => allOn('websocket'), 20_000);
    expect(allOn('websocket')).toBe(true);
    for (let k = 0; k < CHANNELS; k++) await publish(`fleet:${k}`, 'before');
    await until(() => fleet.every((f) => f.got.length === 1), 10_000);

    kill(server); // a crash: no close frame, no drain
    await new Promise((r) => setTimeout(r, 1600));
    server = await startServer(port);

    const restarted = Date.now();
    await until(() => allOn('websocket'), 30_000);
    const on = { websocket: 0, polling: 0, none: 0 };
    for (const f of fleet) on[f.c.transport ?? 'none']++;
    const polled = fleet.filter((f) => f.polled).length;
    console.log(`fleet restart: ${on.websocket}/${CLIENTS} on WebSocket after ${Date.now() - restarted} ms, ${on.polling} on polling, ${on.none} not connected; ${polled} went through polling`);
    expect(on.websocket).toBe(CLIENTS);
    expect(polled).toBe(0);

    const after = ['after 1', 'after 2', 'after 3'];
    for (const d of after) for (let k = 0; k < CHANNELS; k++) await publish(`fleet:${k}`, d);
    await until(() => fleet.every((f) => f.got.length === 1 + after.length), 20_000);
    for (const f of fleet) {
      expect(f.got).toEqual(['before', ...after]);
      // An in-memory server forgot its history: each client was told to reload (PROTOCOL.md reset).
      expect(f.resets).toBe(1);
    }
    fleet.forEach((f) => f.c.close());
  }, 120_000);
});
