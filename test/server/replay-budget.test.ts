// Issue 12, item 7: a small hello asking for a large replay costs bounded memory,
// per connection (the replay window) and over all connections (the replay budget).
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { admitReplay, replayBytes } from '../../server/ws/replay-budget.js';
import type { Connection } from '../../server/ws/connection.js';
import { clientText } from '../support/frames.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { openWs, subscribe, UPGRADE_HEAD, type WsClient } from '../support/ws-client.js';

describe('replay budget (pure)', () => {
  it('admits up to the budget, refuses past it, and always admits a replay alone', () => {
    expect(admitReplay(0, 10_000, 100)).toBe(true);
    expect(admitReplay(60, 40, 100)).toBe(true);
    expect(admitReplay(60, 41, 100)).toBe(false);
  });
  it('counts the bytes of event replays only', () => {
    const e = (json: string) => ({ channel: 'a', cursor: 'c', json });
    expect(replayBytes([null, { kind: 'reset', head: 'h' }, { kind: 'events', events: [e('12'), e('1234')] }])).toBe(6 + 2 * 64);
  });
});

const servers: TestServer[] = [];
const sockets: net.Socket[] = [];
const clients: WsClient[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const c of clients.splice(0)) c.ws.terminate();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

/** A client that upgrades, sends hello, then never reads a byte. */
async function stalledReplay(s: TestServer, channel: string, cursor: string): Promise<net.Socket> {
  const sock = net.connect(s.port, '127.0.0.1');
  sockets.push(sock);
  sock.on('error', () => {});
  await new Promise((r) => sock.once('connect', r));
  const token = await s.token([channel]);
  sock.write(Buffer.concat([Buffer.from(UPGRADE_HEAD(), 'latin1'), clientText(JSON.stringify({ type: 'hello', token, channels: { [channel]: cursor } }))]));
  sock.pause();
  return sock;
}

const conns = (s: TestServer): Connection[] => [...s.server.runtime.conns];
const unsentOnServer = (s: TestServer) => conns(s).reduce((n, c) => n + c.socket.writableLength, 0);

describe('replay memory', () => {
  it('writes a replay at most replayWindowBytes ahead of the kernel for a client that does not read', async () => {
    // Before: up to maxOutboundBytes (1 MiB) queued per connection, and repeatable per connection.
    const s = await startTestServer({ replayWindowBytes: 64 * 1024, helloTimeoutMs: 20_000 });
    servers.push(s);
    const first = await s.publish('big', 0);
    const blob = 'x'.repeat(20_000);
    await s.ctx.bus.publish(Array.from({ length: 600 }, () => ({ channel: 'big', json: JSON.stringify(blob) })));
    await stalledReplay(s, 'big', first);
    await stalledReplay(s, 'big', first);
    // Let the kernel buffers fill: once they are full the window is what is left.
    await new Promise((r) => setTimeout(r, 1500));
    expect(conns(s)).toHaveLength(2);
    for (const c of conns(s)) expect(c.socket.writableLength).toBeLessThanOrEqual(64 * 1024 + 20_100);
    expect(unsentOnServer(s)).toBeLessThan(2 * (64 * 1024 + 20_100));
  });

  it('refuses a replay with 1013 while others hold the budget, and admits one again once they are gone', async () => {
    const s = await startTestServer({ maxReplayBytes: 1_000_000, helloTimeoutMs: 20_000 });
    servers.push(s);
    const first = await s.publish('c', 0);
    const blob = 'y'.repeat(20_000);
    // 600 events of ~20 KB: one replay holds ~12 MB, more than the kernel buffers take and
    // over the budget alone (admitted: it is alone).
    const cursors = await s.ctx.bus.publish(Array.from({ length: 600 }, () => ({ channel: 'c', json: JSON.stringify(blob) })));
    const hog = await stalledReplay(s, 'c', first);
    await expect.poll(() => s.server.runtime.replayBytes).toBeGreaterThan(1_000_000);
    const refused = await openWs(s.wsUrl);
    clients.push(refused);
    refused.send({ type: 'hello', token: await s.token(['c']), channels: { c: cursors[590]! } });
    const closed = await refused.closed;
    expect(closed.code).toBe(1013);
    expect(closed.reason).toMatch(/replay/);
    hog.destroy();
    await expect.poll(() => s.server.runtime.replayBytes).toBe(0);
    const { c: ok } = await subscribe(s.wsUrl, await s.token(['c']), { c: cursors[590]! });
    clients.push(ok);
    await expect.poll(() => ok.queue.length, { timeout: 5000 }).toBe(9);
  });
});
