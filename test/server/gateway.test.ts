// The port's first-bytes dispatch, over raw sockets: handshake answers, limits
// at and past each value, and node:http keeping its keep-alive and pipelining
// after the hand-off.
import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { Config } from '../../server/config.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { clientFrame, clientText, OP, parseServerFrames } from '../support/frames.js';
import { headEnd, openWs, rawConnect, UPGRADE_HEAD, type RawClient } from '../support/ws-client.js';

const T0 = 5_000_000;
let clock = T0;
let servers: TestServer[] = [];
const sockets: RawClient[] = [];

async function start(overrides: Partial<Config> = {}): Promise<TestServer> {
  clock = T0;
  const s = await startTestServer({ helloTimeoutMs: 2000, ...overrides }, { now: () => clock, tickMs: 10 });
  servers.push(s);
  return s;
}
function advance(s: TestServer, ms: number): void {
  clock += ms;
  s.server.wheel.advance(clock);
}

afterEach(async () => {
  for (const r of sockets.splice(0)) r.socket.destroy();
  await Promise.all(servers.map((s) => s.close()));
  servers = [];
});

/** Send `bytes` (in pieces if an array) and return the status line and the head of the answer. */
async function ask(s: TestServer, bytes: string | Buffer | (string | Buffer)[]): Promise<{ status: number; head: string; raw: RawClient }> {
  const raw = await rawConnect(s.port);
  sockets.push(raw);
  for (const piece of Array.isArray(bytes) ? bytes : [bytes]) {
    raw.socket.write(piece);
    await new Promise((r) => setImmediate(r));
  }
  const b = await raw.until((x) => headEnd(x) > 0);
  const head = b.subarray(0, headEnd(b)).toString('latin1');
  return { status: Number(head.slice(9, 12)), head, raw };
}

const upgradeWith = (extra: string[]) => UPGRADE_HEAD('/v1/ws', extra);

describe('WebSocket handshake', () => {
  it('answers 101 to a head split across many reads', async () => {
    const s = await start();
    const head = UPGRADE_HEAD();
    const pieces = [head.slice(0, 3), head.slice(3, 20), head.slice(20, 60), head.slice(60, -2), head.slice(-2)];
    const { status, head: answer } = await ask(s, pieces);
    expect(status).toBe(101);
    expect(answer).toContain('Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
  });

  it('feeds frames pipelined behind the head to the connection (hello and a ping in one packet)', async () => {
    const s = await start();
    const token = await s.token(['a']);
    const { raw } = await ask(s, Buffer.concat([
      Buffer.from(UPGRADE_HEAD()), clientFrame(OP.ping, 'hi'), clientText(JSON.stringify({ type: 'hello', token, channels: { a: null } })),
    ]));
    const b = await raw.until((x) => x.includes('welcome'));
    const frames = parseServerFrames(b.subarray(headEnd(b)));
    expect(frames[0]).toMatchObject({ opcode: OP.pong });
    expect(JSON.parse(frames[1]!.payload.toString())).toMatchObject({ type: 'welcome' });
  });

  it('accepts a head of exactly maxHeadBytes and answers 431 one byte past it', async () => {
    const s = await start({ maxHeadBytes: 1024 });
    const pad = (n: number) => upgradeWith([`X-Pad: ${'p'.repeat(n)}`]);
    const base = pad(0).length;
    expect((await ask(s, pad(1024 - base))).status).toBe(101);
    expect(pad(1024 - base).length).toBe(1024);
    const past = await ask(s, pad(1025 - base));
    expect(past.status).toBe(431);
    await past.raw.ended;
  });

  it('answers 400 to a malformed upgrade request for /v1/ws', async () => {
    const s = await start();
    expect((await ask(s, upgradeWith([]).replace('dGhlIHNhbXBsZSBub25jZQ==', 'short'))).status).toBe(400);
  });

  it('answers 400 to junk bytes (node:http handles what is not ours)', async () => {
    const s = await start();
    const { status, raw } = await ask(s, '\x16\x03\x01 definitely not http\r\n\r\n');
    expect(status).toBe(400);
    await raw.ended;
  });

  it('answers 426 with Sec-WebSocket-Version: 13 to another version', async () => {
    const s = await start();
    const { status, head } = await ask(s, UPGRADE_HEAD().replace('Sec-WebSocket-Version: 13', 'Sec-WebSocket-Version: 8'));
    expect(status).toBe(426);
    expect(head).toContain('Sec-WebSocket-Version: 13');
  });

  it('answers 404 to an upgrade for another path, through node:http and the router', async () => {
    const s = await start();
    const { status, raw } = await ask(s, UPGRADE_HEAD('/v1/other'));
    expect(status).toBe(404);
    await raw.ended;
  });

  it('answers 403 when Origin is not in the allow-list, or missing, and 101 when it is', async () => {
    const s = await start({ allowedOrigins: ['https://mail.example'] });
    expect((await ask(s, upgradeWith(['Origin: https://mail.example']))).status).toBe(101);
    expect((await ask(s, upgradeWith(['Origin: https://evil.example']))).status).toBe(403);
    expect((await ask(s, upgradeWith([]))).status).toBe(403);
  });

  it('never sends 101 after a rejection, and counts rejections by reason', async () => {
    const s = await start({ allowedOrigins: ['https://mail.example'] });
    const { raw } = await ask(s, upgradeWith(['Origin: https://evil.example']));
    await raw.ended;
    expect(raw.bytes().toString('latin1')).not.toContain('101');
    const text = await s.ctx.metrics.registry.metrics();
    expect(text).toContain('tidings_handshake_rejections_total{reason="origin"} 1');
  });
});

describe('capacity', () => {
  it('accepts exactly maxConnections connections and answers 503 with Retry-After past it', async () => {
    const s = await start({ maxConnections: 2 });
    const a = await ask(s, UPGRADE_HEAD());
    const b = await ask(s, UPGRADE_HEAD());
    expect([a.status, b.status]).toEqual([101, 101]);
    const c = await ask(s, UPGRADE_HEAD());
    expect(c.status).toBe(503);
    expect(c.head).toMatch(/Retry-After: \d+/);
    // One leaves: there is room again.
    a.raw.socket.destroy();
    await expect.poll(() => s.ctx.control.connections()).toBe(1);
    expect((await ask(s, UPGRADE_HEAD())).status).toBe(101);
  });

  it('accepts exactly maxHandshakes connections waiting for hello and answers 503 past it', async () => {
    const s = await start({ maxHandshakes: 2 });
    const token = await s.token(['a']);
    const first = await openWs(s.wsUrl);
    await openWs(s.wsUrl);
    expect((await ask(s, UPGRADE_HEAD())).status).toBe(503);
    // The first one finishes its handshake (welcome): it no longer counts.
    first.send({ type: 'hello', token, channels: { a: null } });
    expect((await first.next()).type).toBe('welcome');
    expect((await ask(s, UPGRADE_HEAD())).status).toBe(101);
  });

  it('does not count a head still being read against maxHandshakes (it has its own budget, maxPendingHeads)', async () => {
    const s = await start({ maxHandshakes: 1 });
    const slow = await rawConnect(s.port);
    sockets.push(slow);
    slow.socket.write('GET /v1/ws HTTP/1.1\r\n');
    await expect.poll(() => s.server.runtime.handshakes).toBe(1);
    expect(s.server.runtime.heads.size).toBe(1);
    expect((await ask(s, UPGRADE_HEAD())).status).toBe(101);
  });

  it('answers 503 while upgrades are blocked and while draining', async () => {
    const s = await start();
    s.ctx.control.blockUpgrades = true;
    expect((await ask(s, UPGRADE_HEAD())).status).toBe(503);
    s.ctx.control.blockUpgrades = false;
    expect((await ask(s, UPGRADE_HEAD())).status).toBe(101);
    s.ctx.draining = true;
    const d = await ask(s, UPGRADE_HEAD());
    expect(d.status).toBe(503);
    expect(d.head).toContain('Retry-After: 10'); // the drain window, 10 s by default
  });

  it('destroys a socket whose head is not complete within the handshake window (slowloris)', async () => {
    const s = await start({ helloTimeoutMs: 2000 });
    const slow = await rawConnect(s.port);
    sockets.push(slow);
    slow.socket.write('GET /v1/ws HTTP/1.1\r\nHost: x\r\n');
    await expect.poll(() => s.server.runtime.handshakes).toBe(1);
    advance(s, 1990);
    expect(slow.socket.destroyed).toBe(false);
    advance(s, 30);
    await slow.ended;
    expect(s.server.runtime.handshakes).toBe(0);
  });
});

describe('HTTP on the same port', () => {
  it('serves several requests on one keep-alive socket, pipelined and sequential, after the hand-off', async () => {
    const s = await start();
    const raw = await rawConnect(s.port);
    sockets.push(raw);
    const get = (path: string) => `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`;
    raw.socket.write(get('/healthz') + get('/healthz'));
    await raw.until((b) => b.toString('latin1').split('HTTP/1.1 200').length === 3);
    raw.socket.write(get('/nope'));
    const all = (await raw.until((b) => b.includes('HTTP/1.1 404'))).toString('latin1');
    expect(all.match(/HTTP\/1\.1 \d{3}/g)).toEqual(['HTTP/1.1 200', 'HTTP/1.1 200', 'HTTP/1.1 404']);
    expect(raw.socket.destroyed).toBe(false);
  });

  it('hands over a request whose first bytes arrive alone', async () => {
    const s = await start();
    const { status } = await ask(s, ['G', 'ET /healthz HTTP/1.1\r\nHost: x\r\n\r\n']);
    expect(status).toBe(200);
  });

  it('serves fetch() and WebSocket side by side', async () => {
    const s = await start();
    const ws = await openWs(s.wsUrl);
    const res = await fetch(`${s.url}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('ok');
    ws.ws.close();
  });
});

describe('bad input never takes the server down', () => {
  it('survives random bytes as a request head and as frames after a 101, and keeps serving', async () => {
    const s = await start({ maxHeadBytes: 512, maxMessageBytes: 256 });
    const prefixes = ['', 'GET /v1/ws', 'GET /v1/ws HTTP/1.1\r\n', UPGRADE_HEAD()];
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...prefixes), fc.uint8Array({ maxLength: 700 }), async (prefix, junk) => {
        const raw = await rawConnect(s.port);
        raw.socket.write(Buffer.concat([Buffer.from(prefix, 'latin1'), junk]));
        raw.socket.end();
        await raw.ended;
      }),
      { numRuns: 60, seed: 42 },
    );
    const res = await fetch(`${s.url}/healthz`);
    expect(res.status).toBe(200);
    await expect.poll(() => s.server.runtime.handshakes).toBe(0);
  });
});

