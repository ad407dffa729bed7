// Hostile connects (issue 12, items 1, 3 and 12): sockets that send nothing or
// almost nothing must not lock out real clients nor exhaust the fd limit. Every
// attack here is bounded in count and time and stops by itself.
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { admitSocket, headTimeout, RateLimitedLog, SourceHeads } from '../../server/admission.js';
import { defaultMaxSockets, DEFAULTS, type Config } from '../../server/config.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { headEnd, UPGRADE_HEAD } from '../support/ws-client.js';

const LIMITS = { maxSockets: 100, maxPendingHeads: 10, headsPerSource: 4, helloTimeoutMs: 10_000, headTimeoutUnderLoadMs: 1_000 };

describe('admitSocket (pure)', () => {
  it('admits below every budget with the full head deadline', () => {
    expect(admitSocket({ sockets: 0, pendingHeads: 0, fromSource: 0 }, LIMITS)).toEqual({ kind: 'admit', headTimeoutMs: 10_000, evict: 'none' });
  });
  it('refuses at the socket budget, admits one below it; 0 means no budget', () => {
    expect(admitSocket({ sockets: 99, pendingHeads: 0, fromSource: 0 }, LIMITS).kind).toBe('admit');
    expect(admitSocket({ sockets: 100, pendingHeads: 0, fromSource: 0 }, LIMITS)).toEqual({ kind: 'refuse', reason: 'max_sockets' });
    expect(admitSocket({ sockets: 1e9, pendingHeads: 0, fromSource: 0 }, { ...LIMITS, maxSockets: 0 }).kind).toBe('admit');
  });
  it('at a source\'s pending-head cap, evicts that source\'s oldest head (never the newcomer); one below, nothing', () => {
    expect(admitSocket({ sockets: 0, pendingHeads: 3, fromSource: 3 }, LIMITS)).toMatchObject({ kind: 'admit', evict: 'none' });
    expect(admitSocket({ sockets: 0, pendingHeads: 4, fromSource: 4 }, LIMITS)).toMatchObject({ kind: 'admit', evict: 'source' });
    // Both budgets full: evicting from the source frees room in both.
    expect(admitSocket({ sockets: 0, pendingHeads: 10, fromSource: 4 }, LIMITS)).toMatchObject({ kind: 'admit', evict: 'source' });
  });
  it('evicts the oldest pending head when the pending-head budget is full, never refuses the newcomer for it', () => {
    expect(admitSocket({ sockets: 0, pendingHeads: 9, fromSource: 0 }, LIMITS)).toMatchObject({ kind: 'admit', evict: 'none' });
    expect(admitSocket({ sockets: 0, pendingHeads: 10, fromSource: 0 }, LIMITS)).toMatchObject({ kind: 'admit', evict: 'oldest' });
  });
  it('shortens the head deadline once pending heads pass half their budget', () => {
    expect(headTimeout(5, LIMITS)).toBe(10_000);
    expect(headTimeout(6, LIMITS)).toBe(1_000);
    // Never longer than the normal window.
    expect(headTimeout(6, { ...LIMITS, helloTimeoutMs: 500 })).toBe(500);
  });
  it('SourceHeads keeps each address\'s heads oldest first and forgets an address with none', () => {
    const s = new SourceHeads<string>();
    s.add('a', 'x'); s.add('a', 'y'); s.add('b', 'z');
    expect([s.get('a'), s.oldest('a')]).toEqual([2, 'x']);
    s.remove('a', 'x');
    expect([s.get('a'), s.oldest('a')]).toEqual([1, 'y']);
    s.remove('a', 'y'); s.remove('a', 'y');
    expect([s.get('a'), s.oldest('a'), s.size]).toEqual([0, undefined, 1]);
  });
  it('RateLimitedLog lets one line through per interval and counts the rest', () => {
    let t = 0;
    const l = new RateLimitedLog(1000, () => t);
    expect(l.tick()).toBe(0);
    expect(l.tick()).toBe(-1);
    t = 999;
    expect(l.tick()).toBe(-1);
    t = 1000;
    expect(l.tick()).toBe(2);
  });
  it('defaults the socket budget to the fd limit less 1000', () => {
    expect(defaultMaxSockets(20_000)).toBe(19_000);
    expect(defaultMaxSockets(1024)).toBe(512);
    expect(defaultMaxSockets(null)).toBe(0);
  });
});

let servers: TestServer[] = [];
const open: net.Socket[] = [];
afterEach(async () => {
  for (const s of open.splice(0)) s.destroy();
  await Promise.all(servers.map((s) => s.close()));
  servers = [];
});

async function start(overrides: Partial<Config> = {}, opts: Parameters<typeof startTestServer>[1] = {}): Promise<TestServer> {
  const s = await startTestServer(overrides, opts);
  servers.push(s);
  return s;
}

interface Sock { socket: net.Socket; closed: Promise<void>; bytes(): string }
/** A raw socket from `from` (a loopback address): connected, nothing sent. */
function connectFrom(port: number, from = '127.0.0.1'): Promise<Sock> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress: from });
    open.push(socket);
    let got = '';
    socket.on('data', (d) => { got += d.toString('latin1'); });
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    socket.on('error', () => {});
    socket.once('connect', () => resolve({ socket, closed, bytes: () => got }));
    socket.once('error', reject);
  });
}
/** A real client's upgrade: the status code of the answer (0 if the socket closed without one). */
async function upgradeStatus(port: number, from = '127.0.0.1'): Promise<number> {
  const s = await connectFrom(port, from);
  s.socket.write(UPGRADE_HEAD());
  const deadline = Date.now() + 3000;
  while (headEnd(Buffer.from(s.bytes(), 'latin1')) < 0 && Date.now() < deadline) {
    if (s.socket.destroyed) break;
    await new Promise((r) => setTimeout(r, 5));
  }
  s.socket.destroy();
  return Number(s.bytes().slice(9, 12)) || 0;
}
const tick = (ms = 20) => new Promise((r) => setTimeout(r, ms));

describe('empty connects do not lock out WebSocket clients (item 1)', () => {
  it('sockets that sent nothing do not count against maxHandshakes: upgrades still get 101', async () => {
    // Before: 5 empty sockets filled maxHandshakes = 5 and the real client got 503.
    const s = await start({ maxHandshakes: 5 });
    for (let i = 0; i < 5; i++) await connectFrom(s.port, '127.0.0.2');
    await expect.poll(() => s.server.runtime.heads.size).toBe(5);
    expect(await upgradeStatus(s.port)).toBe(101);
  });

  it('a flood of empty connects from one address: capped per source (its oldest go), the rest of the world still upgrades', async () => {
    const s = await start({ headsPerSource: 20 });
    const flood: Sock[] = [];
    // Bounded: 60 connects, three times the per-source cap.
    for (let i = 0; i < 60; i++) flood.push(await connectFrom(s.port, '127.0.0.2'));
    await tick(50);
    expect(s.server.runtime.heads.size).toBeLessThanOrEqual(20);
    await Promise.all(flood.slice(0, 40).map((f) => f.closed));
    expect(flood.slice(40).some((f) => f.socket.destroyed)).toBe(false);
    const refused = await s.ctx.metrics.socketsRefused.get();
    expect(refused.values.find((v) => v.labels.reason === 'source')?.value).toBe(40);
    const statuses = await Promise.all(Array.from({ length: 10 }, () => upgradeStatus(s.port, '127.0.0.3')));
    expect(statuses).toEqual(Array(10).fill(101));
  });

  it('a flood from the very address of a real client does not cost it its upgrade', async () => {
    const s = await start({ headsPerSource: 10 });
    for (let i = 0; i < 30; i++) await connectFrom(s.port, '127.0.0.4');
    await tick(30);
    const statuses = [];
    for (let i = 0; i < 5; i++) statuses.push(await upgradeStatus(s.port, '127.0.0.4'));
    expect(statuses).toEqual(Array(5).fill(101));
  });

  it('at the pending-head budget the oldest empty socket is dropped for the newcomer', async () => {
    const s = await start({ maxPendingHeads: 6, headsPerSource: 100 });
    const empties: Sock[] = [];
    for (let i = 0; i < 6; i++) empties.push(await connectFrom(s.port, '127.0.0.2'));
    await expect.poll(() => s.server.runtime.heads.size).toBe(6);
    expect(empties.some((e) => e.socket.destroyed)).toBe(false);
    // One past the budget: a real client, and it gets its upgrade.
    expect(await upgradeStatus(s.port)).toBe(101);
    await empties[0]!.closed;
    expect(empties.slice(1).some((e) => e.socket.destroyed)).toBe(false);
    expect(s.server.runtime.heads.size).toBeLessThanOrEqual(6);
  });

  it('under a flood the head deadline shortens to headTimeoutUnderLoadMs', async () => {
    let clock = 1_000_000;
    const s = await start({ maxPendingHeads: 4, helloTimeoutMs: 5_000, headTimeoutUnderLoadMs: 200 }, { now: () => clock, tickMs: 10 });
    const calm = await connectFrom(s.port, '127.0.0.2');
    const calm2 = await connectFrom(s.port, '127.0.0.2');
    const busy = await connectFrom(s.port, '127.0.0.2'); // 3 pending > 4 / 2: under load
    await expect.poll(() => s.server.runtime.heads.size).toBe(3);
    clock += 250;
    s.server.wheel.advance(clock);
    await busy.closed;
    expect([calm.socket.destroyed, calm2.socket.destroyed]).toEqual([false, false]);
    clock += 5_000;
    s.server.wheel.advance(clock);
    await calm.closed;
  });

  it('a real flood (bounded: 1,400 empty connects from 20 addresses in ~1.5 s) costs no legitimate upgrade', async () => {
    // Before: heads counted against maxHandshakes (1000), so past 1000 empty sockets every upgrade got 503.
    const s = await start();
    let stop = false;
    let n = 0;
    const flooder = (async () => {
      while (!stop && n < 1_400) {
        const batch = await Promise.allSettled(Array.from({ length: 70 }, (_, i) => connectFrom(s.port, `127.0.0.${2 + ((n + i) % 20)}`)));
        n += batch.length;
        await tick(60);
      }
    })();
    while (n < 1_050) await tick(20);
    const results: number[] = [];
    for (let i = 0; i < 10; i++) {
      results.push(await upgradeStatus(s.port, '127.0.0.30'));
      await tick(30);
    }
    stop = true;
    await flooder;
    for (const k of open.splice(0)) k.destroy();
    expect(results).toEqual(Array(10).fill(101));
  }, 60_000);
});

describe('socket budget and the HTTP head deadline (item 3)', () => {
  it('holds exactly maxSockets sockets, closes the next one at once, logs and counts it', async () => {
    const lines: string[] = [];
    const { createLogger } = await import('../../server/log.js');
    const log = createLogger({ level: 'warn', destination: { write: (l: string) => { lines.push(l); } } });
    const s = await start({ maxSockets: 5 }, { log });
    const held: Sock[] = [];
    for (let i = 0; i < 5; i++) {
      const k = await connectFrom(s.port);
      k.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'); // keep-alive: stays open
      held.push(k);
    }
    await expect.poll(() => s.server.runtime.sockets).toBe(5);
    const past = await connectFrom(s.port);
    await past.closed;
    expect(held.some((h) => h.socket.destroyed)).toBe(false);
    const refused = await s.ctx.metrics.socketsRefused.get();
    expect(refused.values.find((v) => v.labels.reason === 'max_sockets')?.value).toBe(1);
    expect((await s.ctx.metrics.openSockets.get()).values[0]!.value).toBe(5);
    expect(lines.join('')).toContain('TIDINGS_MAX_SOCKETS');
    // One leaves: room again.
    held[0]!.socket.destroy();
    await expect.poll(() => s.server.runtime.sockets).toBe(4);
    expect(await upgradeStatus(s.port)).toBe(101);
  });

  it('closes an HTTP request head that never completes within the handshake window (not 60-90 s)', async () => {
    const s = await start({ helloTimeoutMs: 1_000 });
    const slow = await connectFrom(s.port);
    slow.socket.write('GET /healthz HTTP/1.1\r\nX-Slow: 1\r\n');
    const t0 = Date.now();
    await Promise.race([slow.closed, tick(6_000)]);
    expect(slow.socket.destroyed).toBe(true);
    expect(Date.now() - t0).toBeLessThan(4_000);
    await expect.poll(() => s.server.runtime.sockets).toBe(0);
  });
});

describe('a long handshake window', () => {
  it('starts with TIDINGS_HELLO_TIMEOUT_MS past node:http\'s request deadline (300 s)', async () => {
    const s = await start({ helloTimeoutMs: 400_000 });
    expect((await fetch(`${s.url}/livez`)).status).toBe(200);
  });
});

describe('listen backlog (item 12)', () => {
  it('is a setting, passed to listen()', async () => {
    expect(DEFAULTS.listenBacklog).toBe(4096);
    const calls: unknown[] = [];
    const orig = net.Server.prototype.listen;
    net.Server.prototype.listen = function (this: net.Server, ...args: unknown[]) {
      calls.push(args[0]);
      return (orig as (...a: unknown[]) => net.Server).apply(this, args);
    } as typeof orig;
    try {
      await start({ listenBacklog: 77 });
    } finally {
      net.Server.prototype.listen = orig;
    }
    expect(calls).toContainEqual(expect.objectContaining({ backlog: 77 }));
  });
});
