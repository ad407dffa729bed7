// Drain semantics in process (createTidingsServer), and the CLI as a child process.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CLOSE_GRACE_MS } from '../../server/ws/connection.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { rawUpgrade, subscribe } from '../support/ws-client.js';
import { OP } from '../support/frames.js';
import { startRedis } from '../support/redis.js';
import { signSubscriberToken } from '../../server/auth/tokens.js';

let servers: TestServer[] = [];
afterEach(async () => {
  await Promise.all(servers.map((s) => s.close()));
  servers = [];
});

function refused(port: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    sock.once('connect', () => { sock.destroy(); resolve(false); });
    sock.once('error', () => resolve(true));
  });
}

describe('drain', () => {
  it('closes every WebSocket with 1012 and the window in ms as reason, then resolves with no socket left', async () => {
    const s = await startTestServer({ drainWindowMs: 7000 });
    servers.push(s);
    const a = await subscribe(s.wsUrl, await s.token(['a']), { a: null });
    const b = await subscribe(s.wsUrl, await s.token(['b']), { b: null });
    const drained = s.server.drain(4321);
    expect(s.ctx.draining).toBe(true);
    expect(await a.c.closed).toEqual({ code: 1012, reason: '4321' });
    expect(await b.c.closed).toEqual({ code: 1012, reason: '4321' });
    await drained;
    expect(s.ctx.control.connections()).toBe(0);
  });

  it('uses config.drainWindowMs when no window is given', async () => {
    const s = await startTestServer({ drainWindowMs: 7000 });
    servers.push(s);
    const a = await subscribe(s.wsUrl, await s.token(['a']), { a: null });
    void s.server.drain();
    expect(await a.c.closed).toEqual({ code: 1012, reason: '7000' });
  });

  it('keeps listening for drainListenMs, answering probes, polls, publishes and upgrades 503, then stops accepting', async () => {
    const s = await startTestServer({ drainListenMs: 2000, drainWindowMs: 3000 });
    servers.push(s);
    const keep = await subscribe(s.wsUrl, await s.token(['a']), { a: null });
    const drained = s.server.drain();
    // The WebSockets are told at once.
    expect(await keep.c.closed).toEqual({ code: 1012, reason: '3000' });
    const get = async (p: string, init?: RequestInit) => {
      const r = await fetch(`${s.url}${p}`, init);
      return [r.status, r.headers.get('retry-after')];
    };
    expect(await get('/livez')).toEqual([200, null]);
    expect(await get('/readyz')).toEqual([503, '3']);
    expect(await get('/healthz')).toEqual([503, '3']);
    const token = await s.token(['a']);
    expect((await get('/v1/poll?channels=a', { headers: { authorization: `Bearer ${token}` } }))[0]).toBe(503);
    expect(await get('/v1/publish', {
      method: 'POST', headers: { authorization: `Bearer ${s.ctx.config.publisherKey}`, 'content-type': 'application/json' }, body: '{"channel":"a","data":1}',
    })).toEqual([503, '3']);
    const up = await rawUpgrade(s.port).then(() => 'upgraded', (e: Error) => e.message);
    expect(up).toMatch(/no 101: HTTP\/1\.1 503 .*\r\nRetry-After: 3\r\n/s);
    await drained;
    expect(await refused(s.port)).toBe(true);
  });

  it('stops accepting connections as soon as the drain starts with drainListenMs 0', async () => {
    const s = await startTestServer();
    servers.push(s);
    const keep = await subscribe(s.wsUrl, await s.token(['a']), { a: null });
    keep.c.ws.pause(); // do not answer the close yet: the drain stays in progress
    void s.server.drain(1000);
    const refused = await new Promise<boolean>((resolve) => {
      const sock = net.connect(s.port, '127.0.0.1');
      sock.once('connect', () => { sock.destroy(); resolve(false); });
      sock.once('error', () => resolve(true));
    });
    expect(refused).toBe(true);
    keep.c.ws.resume();
  });

  it('answers a held long-poll at once and closes idle keep-alive sockets instead of holding them through the drain', async () => {
    const s = await startTestServer();
    servers.push(s);
    const token = await s.token(['a']);
    const head = await s.ctx.bus.head('a');
    const started = Date.now();
    const poll = fetch(`${s.url}/v1/poll?channels=a`, {
      headers: { authorization: `Bearer ${token}`, 'if-none-match': `"a=${head}"`, prefer: 'wait=20' },
    });
    await expect.poll(() => s.server.runtime.ctx.metrics.heldPolls.get().then((m) => m.values[0]?.value)).toBe(1);
    const drainStart = Date.now();
    const drained = s.server.drain(1000);
    const res = await poll;
    expect([200, 304, 503]).toContain(res.status);
    expect(Date.now() - started).toBeLessThan(10_000);
    // The poll's keep-alive socket is idle once answered: closed by the drain, not left to the hard cap.
    await drained;
    expect(Date.now() - drainStart).toBeLessThan(CLOSE_GRACE_MS);
  });

  it('destroys a client that never answers our close frame after the close grace (fake clock)', async () => {
    let clock = 1_000_000;
    const s = await startTestServer({}, { now: () => clock, tickMs: 10 });
    servers.push(s);
    const raw = await rawUpgrade(s.port);
    const drained = s.server.drain(500);
    await raw.until(() => { try { return raw.frames().some((f) => f.opcode === OP.close); } catch { return false; } });
    expect(raw.socket.destroyed).toBe(false);
    clock += CLOSE_GRACE_MS + 20;
    s.server.wheel.advance(clock);
    await raw.ended;
    await drained;
  });
});

describe('close', () => {
  it('destroys every socket at once, including one still sending its request head', async () => {
    const s = await startTestServer();
    const { rawConnect } = await import('../support/ws-client.js');
    const slow = await rawConnect(s.port);
    slow.socket.write('GET /v1/ws HTTP/1.1\r\n');
    await expect.poll(() => s.server.runtime.heads.size).toBe(1);
    const ws = await subscribe(s.wsUrl, await s.token(['a']), { a: null });
    await s.close();
    await slow.ended;
    expect((await ws.c.closed).code).toBe(1006);
  });
});

describe('tidings-server CLI', () => {
  const root = path.resolve(import.meta.dirname, '../..');
  const started: ChildProcess[] = [];
  // Node with tsx's loader, not tsx's CLI: the CLI relays a signal to its child and,
  // when the child does not confirm within 30 ms (a loaded machine), sends it again
  // and then SIGKILL, which the server rightly reads as "stop now" (exit 130/143, 1006).
  const run = (args: string[], env: Record<string, string> = {}) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'server/main.ts'), ...args], {
      cwd: root,
      env: { PATH: `${path.join(root, 'node_modules/.bin')}:${process.env.PATH}`, TIDINGS_PORT: '0', TIDINGS_LOG_LEVEL: 'silent', TIDINGS_DRAIN_LISTEN_MS: '0', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group: --workers children must not outlive a failed test.
      detached: true,
    });
    started.push(child);
    return child;
  };
  afterEach(() => {
    for (const c of started.splice(0)) {
      try { process.kill(-c.pid!, 'SIGKILL'); } catch { /* exited */ }
    }
  });

  it('prints generated secrets once, one "listening on" line, and exits 0 after SIGTERM', async () => {
    const child = run([]);
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    let err = '';
    child.stderr.on('data', (d) => { err += d; });
    await expect.poll(() => /listening on http:\/\/127\.0\.0\.1:(\d+)\n/.test(out), { timeout: 15_000 }).toBe(true);
    const port = Number(/listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out)![1]);
    expect(port).toBeGreaterThan(0);
    expect(out.match(/listening on/g)).toHaveLength(1);
    expect(err.match(/TIDINGS_SUBSCRIBER_SECRET=\S+/g)).toHaveLength(1);
    // The banner goes to stderr: stdout carries the JSON log stream, which must hold no secret.
    expect(err.match(/TIDINGS_PUBLISHER_KEY=\S+/g)).toHaveLength(1);
    expect(out).not.toMatch(/TIDINGS_SUBSCRIBER_SECRET=|TIDINGS_PUBLISHER_KEY=/);
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(health.status).toBe(200);
    child.kill('SIGTERM');
    const [code] = await once(child, 'exit');
    expect(code).toBe(0);
  });

  it('does not print secrets that were configured', async () => {
    const child = run([], { TIDINGS_SUBSCRIBER_SECRET: 'configured-secret-xyz-0123456789abcdef', TIDINGS_PUBLISHER_KEY: 'configured-key-xyz-0123456789abcdef' });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    let err = '';
    child.stderr.on('data', (d) => { err += d; });
    await expect.poll(() => out.includes('listening on'), { timeout: 15_000 }).toBe(true);
    expect(out + err).not.toContain('configured-');
    expect(out + err).not.toContain('Generated secrets');
    child.kill('SIGINT');
    const [code] = await once(child, 'exit');
    expect(code).toBe(0);
  });

  it('prints the help and exits 0 with --help', async () => {
    const child = run(['--help']);
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    const [code] = await once(child, 'exit');
    expect(code).toBe(0);
    expect(out).toContain('TIDINGS_MAX_CONNECTIONS');
    expect(out).toContain('tidings-server token --sub ID');
    expect(out).toContain('TIDINGS_PUBLISHER_KEY_FILE');
    expect(out).not.toContain('listening on');
  });

  it('runs --workers 2 on one port with shared secrets, delivers across workers, and drains all on SIGTERM', async () => {
    const redis = await startRedis();
    try {
      const child = run(['--workers', '2'], { TIDINGS_REDIS_URL: redis.url });
      let out = '';
      child.stdout.on('data', (d) => { out += d; });
      let err = '';
      child.stderr.on('data', (d) => { err += d; });
      await expect.poll(() => out.includes('listening on'), { timeout: 15_000 }).toBe(true);
      await new Promise((r) => setTimeout(r, 200)); // a second line would show up now
      expect(out.match(/listening on/g)).toHaveLength(1);
      const port = Number(/listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out)![1]);
      const secret = /TIDINGS_SUBSCRIBER_SECRET=(\S+)/.exec(err)![1]!;
      const key = /TIDINGS_PUBLISHER_KEY=(\S+)/.exec(err)![1]!;
      const token = await signSubscriberToken(secret, { sub: 'u', ch: ['w'], ttlSeconds: 60 });
      // Several subscribers: round-robin puts them on both workers.
      const subs = await Promise.all([0, 1, 2, 3].map(() => subscribe(`ws://127.0.0.1:${port}/v1/ws`, token, { w: null })));
      const res = await fetch(`http://127.0.0.1:${port}/v1/publish`, {
        method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ channel: 'w', data: 1 }),
      });
      expect(res.status).toBe(200);
      for (const { c } of subs) expect(await c.next(8000)).toMatchObject({ type: 'event', channel: 'w', data: 1 });
      child.kill('SIGTERM');
      for (const { c } of subs) expect((await c.closed).code).toBe(1012);
      const [code] = await once(child, 'exit');
      expect(code).toBe(0);
    } finally {
      await redis.stop();
    }
  });

  it('exits 2 with a message on a config error', async () => {
    const child = run(['--port', 'eighty']);
    let err = '';
    child.stderr.on('data', (d) => { err += d; });
    const [code] = await once(child, 'exit');
    expect(code).toBe(2);
    expect(err).toContain('--port');
  });

  it('after SIGTERM keeps answering probes for TIDINGS_DRAIN_LISTEN_MS (readyz 503, livez 200), logs each drain phase, then exits 0', async () => {
    const child = run([], { TIDINGS_DRAIN_LISTEN_MS: '1500', TIDINGS_LOG_LEVEL: 'info' });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    await expect.poll(() => /listening on http:\/\/127\.0\.0\.1:(\d+)\n/.test(out), { timeout: 15_000 }).toBe(true);
    const port = Number(/listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out)![1]);
    expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    await expect.poll(() => out.includes('"phase":"refusing"'), { timeout: 5000 }).toBe(true);
    const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
    expect([ready.status, ready.headers.get('retry-after'), await ready.text()]).toEqual([503, '10', 'draining\n']);
    expect((await fetch(`http://127.0.0.1:${port}/livez`)).status).toBe(200);
    const [code] = await exited;
    expect(code).toBe(0);
    const phases = out.split('\n').filter((l) => l.includes('"phase"')).map((l) => JSON.parse(l).phase);
    expect(phases).toEqual(['refusing', 'closing', 'done']);
    // The start line: address, bus and limits, no secret.
    const start = JSON.parse(out.split('\n').find((l) => l.includes('"msg":"listening"'))!);
    expect(start).toMatchObject({ address: `127.0.0.1:${port}`, bus: 'memory', limits: { maxConnections: 100000 } });
  });

  it('SIGINT (Ctrl-C at a terminal) skips the listen phase', async () => {
    const child = run([], { TIDINGS_DRAIN_LISTEN_MS: '60000' });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    await expect.poll(() => out.includes('listening on'), { timeout: 15_000 }).toBe(true);
    const t0 = Date.now();
    child.kill('SIGINT');
    const [code] = await once(child, 'exit');
    expect(code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it('exits 2 naming the variable for a publisher key a Bearer header cannot carry, without echoing it', async () => {
    const child = run([], { TIDINGS_PUBLISHER_KEY: 'user:pass-0123456789abcdef' });
    let err = '';
    child.stderr.on('data', (d) => { err += d; });
    const [code] = await once(child, 'exit');
    expect(code).toBe(2);
    expect(err).toContain('TIDINGS_PUBLISHER_KEY contains ":"');
    expect(err).not.toContain('user:pass');
  });

  it('--demo warns loudly on stderr and in the log, and its controls refuse nobody on loopback', async () => {
    const child = run(['--demo'], { TIDINGS_LOG_LEVEL: 'warn' });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    await expect.poll(() => out.includes('listening on'), { timeout: 15_000 }).toBe(true);
    expect(err).toMatch(/\*\*\* DEMO MODE .*loopback clients only.*never run it in production/);
    expect(out).toMatch(/"level":40,.*DEMO MODE/);
    const port = Number(/listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out)![1]);
    expect((await fetch(`http://127.0.0.1:${port}/demo/token?user=alice`)).status).toBe(200);
    child.kill('SIGTERM');
    const [code] = await once(child, 'exit');
    expect(code).toBe(0);
  });
});
