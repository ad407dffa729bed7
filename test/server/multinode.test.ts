// Several Tidings nodes sharing one real redis-server: what a user behind a
// load balancer sees, end to end over WebSocket and HTTP.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { liveKey } from '../../server/pubsub/redis-scripts.js';
import { TEST_PUBLISHER_KEY } from '../support/context.js';
import { startRedis, type TestRedis } from '../support/redis.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { openWs, subscribe, type Msg, type WsClient } from '../support/ws-client.js';

let redis: TestRedis;
const nodes: TestServer[] = [];
const clients: WsClient[] = [];
let n = 0;
const channel = () => `mn:${++n}`;

const node = async (): Promise<TestServer> => {
  const s = await startTestServer({ redisUrl: redis.url });
  nodes.push(s);
  return s;
};

async function publish(s: TestServer, ch: string, data: unknown): Promise<Response> {
  return fetch(`${s.url}/v1/publish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TEST_PUBLISHER_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ channel: ch, data }),
  });
}

async function publishOk(s: TestServer, ch: string, data: unknown): Promise<string> {
  const res = await publish(s, ch, data);
  expect(res.status).toBe(200);
  return ((await res.json()) as { cursor: string }).cursor;
}

async function sub(s: TestServer, channels: Record<string, string | null>): Promise<{ c: WsClient; welcome: Msg }> {
  const r = await subscribe(s.wsUrl, await s.token(Object.keys(channels)), channels);
  clients.push(r.c);
  return r;
}

/** Take `count` messages from a client. */
async function take(c: WsClient, count: number, timeoutMs = 8_000): Promise<Msg[]> {
  const out: Msg[] = [];
  while (out.length < count) out.push(await c.next(timeoutMs));
  return out;
}

/** Wait for a condition driven by real I/O: no fixed sleeps. */
async function until(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

beforeAll(async () => { redis = await startRedis(); });
afterEach(async () => {
  for (const c of clients.splice(0)) c.ws.terminate();
  await Promise.all(nodes.splice(0).map((s) => s.close()));
});
afterAll(async () => { await redis?.stop(); });

describe('several nodes on one Redis', () => {
  it('delivers a publish on any node to the subscribers of every node, once each, in order', async () => {
    const [a, b, c] = [await node(), await node(), await node()];
    const ch = channel();
    const subs = [await sub(a, { [ch]: null }), await sub(b, { [ch]: null }), await sub(c, { [ch]: null }), await sub(c, { [ch]: null })];
    const cursors: string[] = [];
    for (let i = 0; i < 12; i++) cursors.push(await publishOk([a, b, c][i % 3]!, ch, { i }));
    for (const { c: client } of subs) {
      const got = await take(client, 12);
      expect(got.map((m) => m.type)).toEqual(Array(12).fill('event'));
      expect(got.map((m) => m.cursor)).toEqual(cursors);
      expect(got.map((m) => (m.data as { i: number }).i)).toEqual([...Array(12).keys()]);
    }
    // Exactly once: nothing more arrives after a marker published last.
    const marker = await publishOk(a, ch, 'end');
    for (const { c: client } of subs) expect((await client.next()).cursor).toBe(marker);
  });

  it('resumes on another node from a cursor the first node gave', async () => {
    const [a, b] = [await node(), await node()];
    const ch = channel();
    const { c: first } = await sub(a, { [ch]: null });
    const c1 = await publishOk(a, ch, 1);
    expect((await first.next()).cursor).toBe(c1);
    first.ws.close();
    const missed = [await publishOk(b, ch, 2), await publishOk(a, ch, 3)];
    const { c: again, welcome } = await sub(b, { [ch]: c1 });
    expect((welcome.channels as Record<string, string>)[ch]).toBe(missed[1]);
    const got = await take(again, 2);
    expect(got.map((m) => [m.type, m.cursor, m.data])).toEqual([['event', missed[0], 2], ['event', missed[1], 3]]);
    const live = await publishOk(a, ch, 4);
    expect((await again.next()).cursor).toBe(live);
  });

  it('resumes without a reset after every node restarted', async () => {
    const ch = channel();
    let a = await node();
    const { c } = await sub(a, { [ch]: null });
    const c1 = await publishOk(a, ch, 1);
    expect((await c.next()).cursor).toBe(c1);
    const c2 = await publishOk(a, ch, 2);
    expect((await c.next()).cursor).toBe(c2);
    for (const s of nodes.splice(0)) await s.close();
    const c3 = await (async () => { a = await node(); return publishOk(a, ch, 3); })();
    const b = await node();
    const { c: resumed } = await sub(b, { [ch]: c1 });
    const got = await take(resumed, 2);
    expect(got.map((m) => [m.type, m.cursor])).toEqual([['event', c2], ['event', c3]]);
  });

  it('keeps one Redis subscription per node and channel, dropped when the last local subscriber leaves', async () => {
    const a = await node();
    const ch = channel();
    const admin = new Redis(redis.url);
    try {
      const numsub = async () => Number(((await admin.call('PUBSUB', 'SHARDNUMSUB', liveKey(ch))) as [string, number])[1]);
      expect(await numsub()).toBe(0);
      const x = await sub(a, { [ch]: null });
      const y = await sub(a, { [ch]: null });
      expect(await numsub()).toBe(1);
      const b = await node();
      const z = await sub(b, { [ch]: null });
      expect(await numsub()).toBe(2);
      x.c.ws.close();
      await x.c.closed;
      const cur = await publishOk(b, ch, 'still here');
      expect((await y.c.next()).cursor).toBe(cur);
      expect((await z.c.next()).cursor).toBe(cur);
      expect(await numsub()).toBe(2);
      y.c.ws.close();
      z.c.ws.close();
      await until(async () => (await numsub()) === 0, 'unsubscribe when no local subscriber is left');
    } finally {
      admin.disconnect();
    }
  });
});

describe('a node losing its Redis subscription', () => {
  it('delivers to its clients, in order and without reset, what was published while it resubscribed', async () => {
    const [a, b] = [await node(), await node()];
    const ch = channel();
    const { c } = await sub(a, { [ch]: null });
    const first = await publishOk(b, ch, 0);
    expect((await c.next()).cursor).toBe(first);
    const admin = new Redis(redis.url);
    try {
      await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub'); // every node's subscriber connection
    } finally {
      admin.disconnect();
    }
    const during: string[] = [];
    for (let i = 1; i <= 10; i++) during.push(await publishOk(b, ch, i));
    const got = await take(c, 10);
    expect(got.map((m) => [m.type, m.cursor])).toEqual(during.map((cur) => ['event', cur]));
    const live = await publishOk(b, ch, 'live');
    expect(await c.next()).toMatchObject({ type: 'event', cursor: live });
  });
});

describe('a storage backend publishing without HTTP (docs/examples/publish-redis.mjs)', () => {
  const script = 'docs/examples/publish-redis.mjs';
  const run = (args: string[], url = redis.url) =>
    promisify(execFile)(process.execPath, [script, ...args], { env: { ...process.env, TIDINGS_REDIS_URL: url } })
      .then(({ stdout }) => ({ code: 0, stdout, stderr: '' }), (e: { code: number; stdout: string; stderr: string }) => e);

  it('reaches the subscribers of every node, in order with HTTP publishes, and resumes like them', async () => {
    const [a, b] = [await node(), await node()];
    const ch = channel();
    const { c } = await sub(a, { [ch]: null });
    const { c: other } = await sub(b, { [ch]: null });
    const viaHttp = await publishOk(b, ch, 1);
    const out = await run([ch, '{"from":"backend"}']);
    expect(out.code).toBe(0);
    const viaRedis = out.stdout.trim();
    expect(viaRedis).toMatch(/^[0-9A-Za-z_.-]{1,64}$/);
    for (const client of [c, other]) {
      expect((await take(client, 2)).map((m) => [m.cursor, m.data])).toEqual([[viaHttp, 1], [viaRedis, { from: 'backend' }]]);
    }
    const { c: resumed } = await sub(b, { [ch]: viaHttp });
    expect(await resumed.next()).toMatchObject({ type: 'event', cursor: viaRedis, data: { from: 'backend' } });
  });

  it('refuses bad input and an unreachable Redis with a message and exit 1, and prints usage with exit 2', async () => {
    await node();
    expect(await run([channel(), '{not json'])).toMatchObject({ code: 1, stderr: expect.stringMatching(/publish refused: BADJSON/) });
    expect(await run(['bad channel', '1'])).toMatchObject({ code: 1, stderr: expect.stringMatching(/BADCHANNEL/) });
    const dead = 'redis://127.0.0.1:1'; // nothing listens on port 1; a free port could be taken by a parallel test's Redis
    expect(await run([channel(), '1'], dead)).toMatchObject({ code: 1, stderr: expect.stringMatching(/cannot reach Redis at redis:\/\/127\.0\.0\.1/) });
    expect(await run([])).toMatchObject({ code: 2, stderr: expect.stringMatching(/usage/) });
  });
});

describe('Redis killed and restarted mid-stream', () => {
  it('answers 503 + Retry-After and degrades /readyz while down, keeps sockets, and loses nothing silently', async () => {
    const [a, b] = [await node(), await node()];
    const ch = channel();
    const watchers = [await sub(a, { [ch]: null }), await sub(b, { [ch]: null })];
    const before = [await publishOk(a, ch, 1), await publishOk(b, ch, 2)];
    for (const { c } of watchers) expect((await take(c, 2)).map((m) => m.cursor)).toEqual(before);
    expect((await fetch(`${a.url}/healthz`)).status).toBe(200);

    await redis.kill();
    await until(async () => (await fetch(`${a.url}/readyz`)).status === 503, '/readyz 503 while degraded');
    const res = await publish(b, ch, 'during');
    expect(res.status).toBe(503);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(((await res.json()) as { error: string }).error).toBe('bus_unavailable');
    // A new subscriber cannot be served without the bus: a retryable close, not a crash.
    const newcomer = await openWs(a.wsUrl);
    clients.push(newcomer);
    newcomer.send({ type: 'hello', token: await a.token([ch]), channels: { [ch]: null } });
    expect((await newcomer.closed).code).toBe(1011);

    await redis.start();
    await until(async () => (await fetch(`${a.url}/readyz`)).status === 200 && (await fetch(`${b.url}/readyz`)).status === 200, 'ready again');
    // The restarted Redis kept nothing, so the nodes cannot prove continuity: a reset, never silence.
    for (const { c } of watchers) {
      const m = await c.next();
      expect(m.type).toBe('reset');
      expect(m.channel).toBe(ch);
    }
    // Sockets stayed open across the outage and deliver what comes after.
    const after = [await publishOk(a, ch, 3), await publishOk(b, ch, 4)];
    for (const { c } of watchers) {
      expect(c.ws.readyState).toBe(c.ws.OPEN);
      expect((await take(c, 2)).map((m) => [m.type, m.cursor])).toEqual(after.map((cur) => ['event', cur]));
    }
    // A client resuming from a pre-outage cursor on any node gets a reset too.
    const { c: late } = await sub(b, { [ch]: before[1]! });
    const m = await late.next();
    expect(m.type).toBe('reset');
    expect(m.cursor).toBe(after[1]);
  });
});
