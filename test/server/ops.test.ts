// Operability: metrics on their own port, close codes and bus state in metrics,
// sampled log lines for refused handshakes and auth failures (sub, never the token).
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../server/log.js';
import { clientAddress, claimedSub } from '../../server/ops-log.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { openWs, rawUpgrade, subscribe, UPGRADE_HEAD, rawConnect } from '../support/ws-client.js';
import { SignJWT } from 'jose';

let servers: TestServer[] = [];
afterEach(async () => { await Promise.all(servers.map((s) => s.close())); servers = []; });

function logSink() {
  const lines: Record<string, unknown>[] = [];
  const raw: string[] = [];
  const destination = new Writable({ write(chunk, _enc, cb) { raw.push(String(chunk)); lines.push(JSON.parse(String(chunk))); cb(); } });
  return { lines, raw, log: createLogger({ level: 'info', destination }) };
}

describe('metrics', () => {
  it('TIDINGS_METRICS_PORT serves /metrics there only; the public port answers 404', async () => {
    const s = await startTestServer({ metricsPort: 0 });
    servers.push(s);
    expect((await fetch(`${s.url}/metrics`)).status).toBe(200);
    const { freePort } = await import('../support/redis.js');
    const port = await freePort();
    const m = await startTestServer({ metricsPort: port });
    servers.push(m);
    expect(m.server.metricsAddress()).toEqual({ host: '127.0.0.1', port });
    const priv = await fetch(`http://127.0.0.1:${port}/metrics`);
    expect(priv.status).toBe(200);
    expect(await priv.text()).toContain('# TYPE tidings_ws_connections gauge');
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(404);
    expect((await fetch(`${m.url}/metrics`)).status).toBe(404);
  });

  it('counts closes by code and side, and reports the bus state', async () => {
    const s = await startTestServer();
    servers.push(s);
    const t = await s.token(['a']);
    const bad = await openWs(s.wsUrl);
    bad.send({ type: 'hello', token: 'x.y.z', channels: { a: null } });
    expect((await bad.closed).code).toBe(4401);
    const good = await subscribe(s.wsUrl, t, { a: null });
    good.c.ws.close(1000);
    await good.c.closed;
    const gone = await subscribe(s.wsUrl, t, { a: null });
    gone.c.ws.terminate();
    await expect.poll(async () => (await (await fetch(`${s.url}/metrics`)).text()).includes('by="abnormal"')).toBe(true);
    const text = await (await fetch(`${s.url}/metrics`)).text();
    expect(text).toContain('tidings_ws_closes_total{code="4401",by="server"} 1');
    expect(text).toContain('tidings_ws_closes_total{code="1000",by="client"} 1');
    expect(text).toContain('tidings_ws_closes_total{code="1006",by="abnormal"} 1');
    expect(text).toContain('tidings_bus_up 1');
  });
});

describe('TIDINGS_TRUST_PROXY', () => {
  const longPoll = async (s: TestServer, xff: string) => {
    const head = await s.ctx.bus.head('a');
    const ac = new AbortController();
    const answered = fetch(`${s.url}/v1/poll?channels=a`, {
      signal: ac.signal,
      headers: { authorization: `Bearer ${await s.token(['a'])}`, 'if-none-match': `"a=${head}"`, prefer: 'wait=20', 'x-forwarded-for': xff },
    }).then((r) => r.status, () => 0);
    return { answered, abort: () => ac.abort() };
  };

  it('behind one proxy, the per-address long-poll cap counts the forwarded client address, not the proxy', async () => {
    for (const trustProxy of [false, true]) {
      const s = await startTestServer({ maxHeldPollsPerSource: 1, trustProxy });
      servers.push(s);
      const a = await longPoll(s, '203.0.113.1');
      await expect.poll(() => s.ctx.metrics.heldPolls.get().then((m) => m.values[0]?.value)).toBe(1);
      const b = await longPoll(s, '203.0.113.2');
      if (trustProxy) {
        await expect.poll(() => s.ctx.metrics.heldPolls.get().then((m) => m.values[0]?.value)).toBe(2);
      } else {
        expect(await b.answered).toBe(429); // both came from 127.0.0.1: one "address"
      }
      a.abort();
      b.abort();
    }
  });
});

describe('log lines', () => {
  it('auth failures: one sampled info line with the claimed sub, never the token', async () => {
    const sink = logSink();
    const s = await startTestServer({ logLevel: 'info' }, { log: sink.log });
    servers.push(s);
    const forged = await new SignJWT({ ch: ['a'] }).setProtectedHeader({ alg: 'HS256' }).setSubject('mallory')
      .setExpirationTime('1h').sign(new TextEncoder().encode('not-the-server-secret-0123456789'));
    for (let i = 0; i < 3; i++) {
      expect((await fetch(`${s.url}/v1/poll?channels=a`, { headers: { authorization: `Bearer ${forged}` } })).status).toBe(401);
    }
    const c = await openWs(s.wsUrl);
    c.send({ type: 'hello', token: forged, channels: { a: null } });
    await c.closed;
    const auth = sink.lines.filter((l) => l.kind === 'auth_failed');
    expect(auth).toHaveLength(1); // sampled: the others are counted in the next line's `suppressed`
    expect(auth[0]).toMatchObject({ level: 30, transport: 'polling', reason: 'invalid', sub: 'mallory', suppressed: 0 });
    expect(sink.raw.join('')).not.toContain(forged);
    expect(sink.raw.join('')).not.toContain(forged.split('.')[2]);
  });

  it('refused handshakes: a sampled line with the reason', async () => {
    const sink = logSink();
    const s = await startTestServer({ logLevel: 'info', maxConnections: 0 }, { log: sink.log });
    servers.push(s);
    await rawUpgrade(s.port).catch(() => {});
    const raw = await rawConnect(s.port);
    raw.socket.write(UPGRADE_HEAD().replace('Version: 13', 'Version: 8'));
    await raw.ended;
    const refused = sink.lines.filter((l) => l.kind === 'handshake_refused');
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatchObject({ reason: 'over_capacity', status: 503, msg: 'WebSocket handshake refused' });
  });

  it('claimedSub reads the unverified sub, clientAddress honours TIDINGS_TRUST_PROXY', () => {
    expect(claimedSub(`e30.${Buffer.from('{"sub":"u42"}').toString('base64url')}.sig`)).toBe('u42');
    expect(claimedSub('garbage')).toBeUndefined();
    const req = { headers: { 'x-forwarded-for': '203.0.113.9, 198.51.100.7' }, socket: { remoteAddress: '10.0.0.2' } } as never;
    expect(clientAddress(req, { trustProxy: false })).toBe('10.0.0.2');
    expect(clientAddress(req, { trustProxy: true })).toBe('198.51.100.7');
  });
});
