// Issue 12, item 11: held long-polls woken by one publish cost O(1) bus reads
// per node, not one per waiter (on Redis: one script call per waiter before).
import { request, type ClientRequest } from 'node:http';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { signSubscriberToken } from '../../server/auth/tokens.js';
import type { Replay } from '../../server/pubsub/bus.js';
import { SharedReads } from '../../server/http/shared-reads.js';
import { TEST_PUBLISHER_KEY, TEST_SUBSCRIBER_SECRET } from '../support/context.js';
import { startRedis, type TestRedis } from '../support/redis.js';
import { startTestServer, type TestServer } from '../support/server.js';

function fakeBus() {
  const calls: string[] = [];
  const pending: (() => void)[] = [];
  const bus = {
    readAfter: (ch: string, cur: string) => {
      calls.push(`read ${ch} ${cur}`);
      return new Promise<Replay>((resolve) => pending.push(() => resolve({ kind: 'events', events: [] })));
    },
    head: (ch: string) => {
      calls.push(`head ${ch}`);
      return new Promise<string>((resolve) => pending.push(() => resolve('h')));
    },
  };
  const settle = async () => { for (const f of pending.splice(0)) f(); await new Promise((r) => setImmediate(r)); };
  return { bus, calls, settle };
}

describe('SharedReads (unit)', () => {
  it('joins identical reads in flight, keeps different cursors apart, and forgets settled reads', async () => {
    const { bus, calls, settle } = fakeBus();
    const r = new SharedReads(bus);
    const a = r.readAfter('c', 'x');
    expect(r.readAfter('c', 'x')).toBe(a);
    r.readAfter('c', 'y');
    r.head('c');
    r.head('c');
    expect(calls).toEqual(['read c x', 'read c y', 'head c']);
    await settle();
    expect(r.size).toBe(0);
    r.readAfter('c', 'x');
    expect(calls).toHaveLength(4);
  });

  it('never joins a read started before a live event of its channel', async () => {
    const { bus, calls } = fakeBus();
    const r = new SharedReads(bus);
    const before = r.readAfter('c', 'x');
    r.readAfter('d', 'x');
    r.invalidate('c');
    expect(r.readAfter('c', 'x')).not.toBe(before);
    r.readAfter('d', 'x'); // another channel's read is still joined
    expect(calls).toEqual(['read c x', 'read d x', 'read c x']);
  });
});

let redis: TestRedis;
const servers: TestServer[] = [];
const reqs: ClientRequest[] = [];
beforeAll(async () => { redis = await startRedis(); });
afterEach(async () => {
  for (const r of reqs.splice(0)) r.destroy();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});
afterAll(async () => { await redis?.stop(); });

/** `n` long-polls of `ch` at its head, one token subject each; resolves with their answers' statuses. */
async function holdPolls(s: TestServer, ch: string, n: number): Promise<Promise<number>[]> {
  const head = await s.ctx.bus.head(ch);
  const answers: Promise<number>[] = [];
  for (let i = 0; i < n; i++) {
    const token = await signSubscriberToken(TEST_SUBSCRIBER_SECRET, { sub: `u${i}`, ch: [ch], ttlSeconds: 300 });
    answers.push(new Promise<number>((resolve, reject) => {
      const req = request({
        host: '127.0.0.1', port: s.port, path: `/v1/poll?channels=${ch}`, agent: false,
        headers: { authorization: `Bearer ${token}`, 'if-none-match': `"${ch}=${head}"`, prefer: 'wait=20' },
      }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode!)); });
      req.on('error', reject);
      req.end();
      reqs.push(req);
    }));
  }
  await expect.poll(async () => (await s.ctx.metrics.heldPolls.get()).values[0]?.value, { timeout: 10_000 }).toBe(n);
  return answers;
}

async function fcallCalls(r: Redis): Promise<number> {
  const info = await r.info('commandstats');
  const m = /cmdstat_fcall:calls=(\d+)/.exec(info);
  return m ? Number(m[1]) : 0;
}

describe('one publish wakes many held polls', () => {
  it('on Redis: 300 held polls cost a constant number of script calls per publish (was one per waiter)', async () => {
    const s = await startTestServer({ redisUrl: redis.url });
    servers.push(s);
    const answers = await holdPolls(s, 'shared:1', 300);
    const admin = new Redis(redis.url);
    try {
      const before = await fcallCalls(admin);
      const res = await fetch(`${s.url}/v1/publish`, {
        method: 'POST', headers: { authorization: `Bearer ${TEST_PUBLISHER_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ channel: 'shared:1', data: 1 }),
      });
      expect(res.status).toBe(200);
      expect(await Promise.all(answers)).toEqual(Array(300).fill(200));
      const used = (await fcallCalls(admin)) - before;
      // The publish, and one read for all the waiters (the INFO calls themselves are not FCALLs).
      expect(used).toBeLessThanOrEqual(3);
    } finally {
      admin.disconnect();
    }
  }, 40_000);

  it('on the memory bus: one read for 100 waiters of one cursor', async () => {
    const s = await startTestServer();
    servers.push(s);
    const answers = await holdPolls(s, 'shared:2', 100);
    let reads = 0;
    const orig = s.ctx.bus.readAfter.bind(s.ctx.bus);
    s.ctx.bus.readAfter = (ch, cur) => { reads++; return orig(ch, cur); };
    await s.publish('shared:2', 'x');
    expect(await Promise.all(answers)).toEqual(Array(100).fill(200));
    expect(reads).toBe(1);
  });
});
