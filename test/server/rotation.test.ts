// Secret rotation with live clients: several subscriber secrets (kid selects one,
// a token without kid tries each) and several publisher keys, so tokens minted
// before, during and after a rotation all work on every node.
import { SignJWT } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { signSubscriberToken, TokenError, verifySubscriberToken, type SubscriberKey } from '../../server/auth/tokens.js';
import { loadConfig } from '../../server/config.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { openWs, subscribe } from '../support/ws-client.js';

const OLD = 'old-secret-0123456789-0123456789-x';
const NEW = 'new-secret-0123456789-0123456789-y';
const RING: SubscriberKey[] = [{ kid: '2026-12', secret: NEW }, { kid: '2026-11', secret: OLD }];

const mint = (secret: string, header: Record<string, string>, ttl = 300) =>
  new SignJWT({ ch: ['a'] }).setProtectedHeader({ alg: 'HS256', ...header }).setSubject('u1')
    .setExpirationTime(Math.floor(Date.now() / 1000) + ttl).sign(new TextEncoder().encode(secret));

describe('verifySubscriberToken with a keyring', () => {
  it('a kid selects its secret; a token without kid is tried against each', async () => {
    expect((await verifySubscriberToken(RING, await mint(NEW, { kid: '2026-12' }))).sub).toBe('u1');
    expect((await verifySubscriberToken(RING, await mint(OLD, { kid: '2026-11' }))).sub).toBe('u1');
    expect((await verifySubscriberToken(RING, await mint(OLD, {}))).sub).toBe('u1');
    expect((await verifySubscriberToken(RING, await mint(NEW, {}))).sub).toBe('u1');
  });

  it('refuses a kid naming the wrong secret, an unknown kid, and a secret not in the ring', async () => {
    await expect(verifySubscriberToken(RING, await mint(OLD, { kid: '2026-12' }))).rejects.toMatchObject({ code: 'invalid' });
    await expect(verifySubscriberToken(RING, await mint(NEW, { kid: 'nope' }))).rejects.toThrow(/kid "nope" names no configured secret/);
    await expect(verifySubscriberToken(RING, await mint('another-secret-0123456789-abcdefgh', {}))).rejects.toBeInstanceOf(TokenError);
  });

  it('an expired token signed with the second secret is "expired", not "invalid"', async () => {
    await expect(verifySubscriberToken(RING, await mint(OLD, {}, -10))).rejects.toMatchObject({ code: 'expired' });
  });

  it('signs with the first secret and its kid', async () => {
    const t = await signSubscriberToken(RING, { sub: 'u', ch: ['a'], ttlSeconds: 60 });
    expect(JSON.parse(Buffer.from(t.split('.')[0]!, 'base64url').toString())).toMatchObject({ kid: '2026-12' });
    expect((await verifySubscriberToken(NEW, t)).sub).toBe('u');
  });
});

describe('a rotation with live clients', () => {
  let s: TestServer | null = null;
  afterEach(async () => { await s?.close(); s = null; });

  it('old tokens (no kid), new tokens (kid) and both publisher keys work on one node during the rotation', async () => {
    // Before: one secret, one key. During: both listed, the new one first.
    const { config } = loadConfig({
      TIDINGS_SUBSCRIBER_SECRETS: `2026-12:${NEW},2026-11:${OLD}`,
      TIDINGS_PUBLISHER_KEYS: 'publisher-key-new-0123456789abcdef,publisher-key-old-0123456789abcdef',
    }, []);
    s = await startTestServer({ subscriberSecret: config.subscriberSecret, subscriberSecrets: config.subscriberSecrets, publisherKey: config.publisherKey, publisherKeys: config.publisherKeys });
    const before = await signSubscriberToken(OLD, { sub: 'u', ch: ['a'], ttlSeconds: 60 });
    const after = await signSubscriberToken([{ kid: '2026-12', secret: NEW }], { sub: 'u', ch: ['a'], ttlSeconds: 60 });
    const ws1 = await subscribe(s.wsUrl, before, { a: null });
    const ws2 = await subscribe(s.wsUrl, after, { a: null });
    for (const t of [before, after]) {
      const r = await fetch(`${s.url}/v1/poll?channels=a`, { headers: { authorization: `Bearer ${t}` } });
      expect(r.status).toBe(200);
    }
    for (const [i, key] of ['publisher-key-new-0123456789abcdef', 'publisher-key-old-0123456789abcdef'].entries()) {
      const r = await fetch(`${s.url}/v1/publish`, {
        method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ channel: 'a', data: i }),
      });
      expect(r.status).toBe(200);
    }
    for (const { c } of [ws1, ws2]) {
      expect(await c.next()).toMatchObject({ type: 'event', data: 0 });
      expect(await c.next()).toMatchObject({ type: 'event', data: 1 });
    }
    // A token from neither secret is still refused (4401).
    const stranger = await openWs(s.wsUrl);
    stranger.send({ type: 'hello', token: await mint('stranger-secret-0123456789abcdef', {}), channels: { a: null } });
    expect((await stranger.closed).code).toBe(4401);
    ws1.c.ws.close();
    ws2.c.ws.close();
  });
});

describe('a rolling rotation across two nodes on Redis, with live SDK clients', () => {
  it('no valid token is refused and no event is lost while nodes and backend move to the new secret', async () => {
    const { startRedis, freePort } = await import('../support/redis.js');
    const { createClient } = await import('../../src/index.js');
    const redis = await startRedis();
    const nodes: TestServer[] = [];
    const clients: { close(): void }[] = [];
    try {
      const portA = await freePort();
      const before = { subscriberSecret: OLD, subscriberSecrets: [] as string[] };
      const during = { subscriberSecret: NEW, subscriberSecrets: [`2026-12:${NEW}`, `2026-11:${OLD}`] };
      // Node A still has the old secret only; node B already has both (the roll is under way).
      let a = await startTestServer({ ...before, port: portA, redisUrl: redis.url, drainWindowMs: 200 });
      const b = await startTestServer({ ...during, redisUrl: redis.url });
      nodes.push(a, b);
      // The backend signs with the old secret until every node has both.
      let backendSigns: SubscriberKey[] = [{ kid: null, secret: OLD }];
      const mintFor = () => signSubscriberToken(backendSigns, { sub: 'u', ch: ['mail'], ttlSeconds: 60 });
      const got: Record<string, unknown[]> = { onA: [], onB: [] };
      const refused: unknown[] = [];
      for (const [name, node] of [['onA', a], ['onB', b]] as const) {
        const c = createClient({ url: node.url, token: mintFor, channels: ['mail'], transport: 'websocket', backoff: { base: 50, cap: 200 } });
        c.on('event', (e) => got[name]!.push(e.data));
        c.on('error', (e) => refused.push(e));
        clients.push(c);
        await c.ready();
      }
      await b.publish('mail', 1);
      // Roll node A: drain (its clients get 1012 and come back), restart with both secrets on the same port.
      await a.server.drain(200);
      a = await startTestServer({ ...during, port: portA, redisUrl: redis.url });
      nodes.push(a);
      await b.publish('mail', 2);
      // Every node has both: the backend switches to the new secret (with its kid).
      backendSigns = [{ kid: '2026-12', secret: NEW }];
      await new Promise((r) => setTimeout(r, 300));
      await b.server.drain(200); // node B restarts too; its client refetches a NEW token
      const b2 = await startTestServer({ ...during, port: b.port, redisUrl: redis.url });
      nodes.push(b2);
      await a.publish('mail', 3);
      await expect.poll(() => [got.onA, got.onB], { timeout: 10_000 }).toEqual([[1, 2, 3], [1, 2, 3]]);
      expect(refused).toEqual([]);
    } finally {
      for (const c of clients) c.close();
      for (const n of nodes) await n.close().catch(() => {});
      await redis.stop();
    }
  }, 30_000);
});
