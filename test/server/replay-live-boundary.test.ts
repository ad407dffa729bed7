// Issue 12, item 4: no event duplicated or reordered at the replay -> live
// boundary (PROTOCOL.md step 3), on the Redis bus as on the memory bus, while
// events are being published. Bounded: 150 reconnects, then it stops.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { LiveBarrier } from '../../server/pubsub/live-barrier.js';
import { epochKey, streamKey } from '../../server/pubsub/redis-scripts.js';
import { startRedis, type TestRedis } from '../support/redis.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { openWs, type Msg } from '../support/ws-client.js';

describe('LiveBarrier (unit)', () => {
  const num = (a: string, b: string) => Number(a) > Number(b);
  it('needs no wait when the feed is at or past the cursor', () => {
    const b = new LiveBarrier(num);
    expect(b.wait('c', '5', '5')).toBeNull();
    expect(b.wait('c', '5', '7')).toBeNull();
  });
  it('releases a waiter when the feed reaches its cursor, not before; other channels apart', async () => {
    const b = new LiveBarrier(num);
    let done = false;
    void b.wait('c', '5', '3')!.then(() => { done = true; });
    b.advanced('c', '4');
    b.advanced('d', '9');
    await Promise.resolve();
    expect(done).toBe(false);
    b.advanced('c', '5');
    await Promise.resolve();
    expect(done).toBe(true);
    expect(b.size).toBe(0);
  });
  it('releases a waiter that is never reached after the timeout, and on releaseAll', async () => {
    const b = new LiveBarrier(num, 30);
    const t0 = Date.now();
    await b.wait('c', '99', null);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(25);
    const p = b.wait('c', '99', null)!;
    b.releaseAll('c');
    await p;
    expect(b.size).toBe(0);
  });
});

let redis: TestRedis;
const servers: TestServer[] = [];
beforeAll(async () => { redis = await startRedis(); });
afterEach(async () => { await Promise.all(servers.splice(0).map((s) => s.close())); });
afterAll(async () => { await redis?.stop(); });

/**
 * Publish continuously (another process-like client: FCALL straight to Redis, as
 * a storage backend does) while `rounds` clients in turn subscribe with the
 * cursor the previous one ended with, take what comes for a short while, and
 * leave. Returns how many connections saw an event twice or out of order.
 */
async function reconnectStorm(
  s: TestServer, ch: string, rounds: number, publish: (i: number) => Promise<unknown>, key: (cursor: string) => bigint,
): Promise<{ bad: number; total: number }> {
  let stop = false;
  let i = 0;
  const publisher = (async () => {
    while (!stop && i < 20_000) {
      await Promise.all([publish(i++), publish(i++)]);
      await new Promise((r) => setImmediate(r));
    }
  })();
  let cursor: string | null = null;
  let bad = 0;
  let total = 0;
  const token = await s.token([ch]);
  const parallel = 5;
  for (let r = 0; r < rounds; r += parallel) {
    const starting = cursor;
    const results = await Promise.all(Array.from({ length: parallel }, async () => {
      const c = await openWs(s.wsUrl);
      c.send({ type: 'hello', token, channels: { [ch]: starting } });
      await new Promise((res) => setTimeout(res, 40));
      const seen = [...c.queue];
      c.ws.terminate();
      return seen;
    }));
    for (const msgs of results) {
      total++;
      const cursors = msgs.filter((m: Msg) => m.type === 'event').map((m) => m.cursor as string);
      // Every cursor must be newer than the one before (one epoch throughout).
      let ok = true;
      let prev = starting === null ? -1n : key(starting);
      for (const x of cursors) { if (key(x) <= prev) ok = false; prev = key(x); }
      if (!ok) bad++;
      if (cursors.length > 0) cursor = cursors[cursors.length - 1]!;
    }
  }
  stop = true;
  await publisher;
  return { bad, total };
}

describe('reconnecting with a cursor while events are published', () => {
  it('Redis bus: 150 reconnects, no duplicate and no reordering (before: 33 of 150 had duplicates)', async () => {
    const s = await startTestServer({ redisUrl: redis.url });
    servers.push(s);
    const ch = 'boundary:redis';
    const direct = new Redis(redis.url);
    try {
      const pub = (i: number) => direct.fcall('tidings_publish', 2, streamKey(ch), epochKey(ch), ch, JSON.stringify({ i }), '1000', '3600');
      await pub(-1);
      // Redis cursors: <epoch>.<ms>-<seq>.
      const key = (x: string): bigint => { const [ms, seq] = x.split('.').pop()!.split('-'); return BigInt(ms!) * 1_000_000n + BigInt(seq!); };
      const { bad, total } = await reconnectStorm(s, ch, 150, pub, key);
      expect(total).toBe(150);
      expect(bad).toBe(0);
    } finally {
      direct.disconnect();
    }
  }, 60_000);

  it('memory bus: 150 reconnects, no duplicate and no reordering', async () => {
    const s = await startTestServer();
    servers.push(s);
    const ch = 'boundary:mem';
    await s.publish(ch, -1);
    // Memory cursors: <epoch>-<seq>.
    const { bad, total } = await reconnectStorm(s, ch, 150, (i) => s.publish(ch, { i }), (x) => BigInt(x.split('-').pop()!));
    expect(total).toBe(150);
    expect(bad).toBe(0);
  }, 60_000);
});
