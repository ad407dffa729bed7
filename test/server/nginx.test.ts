// The server behind a real Debian nginx, configured with exactly the block in
// docs/deploy.md (upstream keepalive included): plain requests interleaved with
// WebSocket upgrades (every upgrade reaches `welcome`, also on upstream
// connections nginx reuses), a publish through the proxy reaching every
// subscriber, and the SDK on both transports through the proxy.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createClient, type Client } from '../../src/index.js';
import { findNginx, startNginx, type Nginx } from '../support/nginx.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { TEST_PUBLISHER_KEY } from '../support/context.js';

const NGINX = findNginx();
if (NGINX === null) {
  // CI installs it (scripts/ensure-system-deps.sh); a developer machine may not have it.
  console.warn('nginx.test.ts SKIPPED: no nginx binary (apt-get install nginx, or run scripts/ensure-system-deps.sh)');
}

const ROUNDS = 40;

describe.skipIf(NGINX === null)('behind nginx with an upstream keepalive pool (docs/deploy.md)', () => {
  let s: TestServer;
  let proxy: Nginx;
  /** Upgrades that arrived on a connection node:http had already served (nginx reused it). */
  let reusedUpgrades = 0;

  beforeAll(async () => {
    s = await startTestServer({ logLevel: 'silent' });
    s.server.runtime.httpServer.on('upgrade', () => { reusedUpgrades++; });
    proxy = await startNginx(NGINX!, s.port);
  });
  afterAll(async () => {
    await proxy?.stop();
    await s?.close();
  });

  const publish = (channel: string, data: unknown) =>
    fetch(`${proxy.url}/v1/publish`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_PUBLISHER_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ channel, data }),
    });

  it(`every one of ${ROUNDS} upgrades interleaved with plain requests reaches welcome, and a publish reaches every subscriber`, async () => {
    const token = await s.token(['mail']);
    const sockets: WebSocket[] = [];
    const received: Promise<unknown>[] = [];
    let welcomes = 0;
    try {
      for (let i = 0; i < ROUNDS; i++) {
        // Plain requests first: they leave idle upstream connections in nginx's pool.
        const health = await fetch(`${proxy.url}/healthz`);
        expect([health.status, await health.text()]).toEqual([200, 'ok\n']);
        const poll = await fetch(`${proxy.url}/v1/poll?channels=mail`, { headers: { authorization: `Bearer ${token}` } });
        expect(poll.status).toBe(200);
        await poll.text();

        const ws = new WebSocket(`${proxy.url.replace('http', 'ws')}/v1/ws`, 'tidings.v1');
        sockets.push(ws);
        const messages: unknown[] = [];
        const welcome = new Promise<void>((resolve, reject) => {
          ws.once('open', () => ws.send(JSON.stringify({ type: 'hello', token, channels: { mail: null } })));
          ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade ${i} refused: ${res.statusCode}`)));
          ws.once('error', reject);
          ws.on('message', (d) => {
            const m = JSON.parse(String(d));
            if (m.type === 'welcome') resolve();
            else messages.push(m);
          });
        });
        await welcome;
        welcomes++;
        received.push(new Promise((resolve) => {
          const check = () => (messages.length > 0 ? resolve(messages[0]) : setTimeout(check, 10));
          check();
        }));
      }
      expect(welcomes).toBe(ROUNDS);
      // The point of the test: nginx did send upgrades on reused upstream connections.
      expect(reusedUpgrades).toBeGreaterThan(0);
      console.info(`nginx: ${welcomes}/${ROUNDS} upgrades reached welcome, ${reusedUpgrades} of them on reused upstream connections`);

      const r = await publish('mail', { unread: 1 });
      expect(r.status).toBe(200);
      const { cursor } = (await r.json()) as { cursor: string };
      const got = await Promise.all(received);
      expect(got).toHaveLength(ROUNDS);
      for (const m of got) expect(m).toEqual({ type: 'event', channel: 'mail', cursor, data: { unread: 1 } });
    } finally {
      for (const ws of sockets) ws.terminate();
    }
  });

  it('60 upgrades concurrent with 60 plain requests (the measurement that found 46 of 60 refused): every one reaches welcome', async () => {
    const token = await s.token(['mail']);
    const before = reusedUpgrades;
    const sockets: WebSocket[] = [];
    const upgrade = () => new Promise<void>((resolve, reject) => {
      const ws = new WebSocket(`${proxy.url.replace('http', 'ws')}/v1/ws`, 'tidings.v1');
      sockets.push(ws);
      ws.once('open', () => ws.send(JSON.stringify({ type: 'hello', token, channels: { mail: null } })));
      ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
      ws.once('error', reject);
      ws.once('message', (d) => (JSON.parse(String(d)).type === 'welcome' ? resolve() : reject(new Error(String(d)))));
    });
    const plain = async () => {
      const r = await fetch(`${proxy.url}/v1/poll?channels=mail`, { headers: { authorization: `Bearer ${token}` } });
      await r.text();
      return r.status;
    };
    try {
      for (let batch = 0; batch < 3; batch++) {
        const results = await Promise.allSettled([...Array.from({ length: 20 }, plain), ...Array.from({ length: 20 }, upgrade)]);
        const failed = results.filter((r) => r.status === 'rejected' || (typeof r.value === 'number' && r.value !== 200));
        expect(failed).toEqual([]);
      }
      console.info(`nginx, concurrent: 60/60 upgrades reached welcome, ${reusedUpgrades - before} on reused upstream connections`);
    } finally {
      for (const ws of sockets) ws.terminate();
    }
  });

    async function sdkDelivers(transport: 'websocket' | 'polling'): Promise<void> {
    const channel = `user:${transport}`;
    // A plain request first, so the SDK's upgrade can land on a reused upstream connection.
    await (await fetch(`${proxy.url}/healthz`)).text();
    const client: Client = createClient({
      url: proxy.url, token: () => s.token([channel]), channels: [channel], transport, longPoll: 5,
    });
    try {
      const events: unknown[] = [];
      const got = new Promise<void>((resolve) => client.on('event', (e) => { events.push(e.data); if (events.length === 2) resolve(); }));
      // Outside a browser the client starts with its first listener (or ready()).
      await client.ready();
      expect(client.transport).toBe(transport);
      // Both through the proxy: a publish while the client waits, then a second one.
      expect((await publish(channel, 'one')).status).toBe(200);
      expect((await publish(channel, 'two')).status).toBe(200);
      await got;
      expect(events).toEqual(['one', 'two']);
    } finally {
      client.close();
    }
  }

  it('the SDK over WebSocket through the proxy receives what is published through it', () => sdkDelivers('websocket'));
  it('the SDK over (long-)polling through the proxy receives what is published through it', () => sdkDelivers('polling'));
});
