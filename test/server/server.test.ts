// createTidingsServer as a whole with TIDINGS_REDIS_URL: the Redis bus is loaded
// at listen(), and two nodes sharing one Redis deliver each other's events.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../support/server.js';
import { startRedis, type TestRedis } from '../support/redis.js';
import { subscribe } from '../support/ws-client.js';
import { TEST_PUBLISHER_KEY } from '../support/context.js';

let redis: TestRedis;
const servers: TestServer[] = [];
beforeAll(async () => { redis = await startRedis(); });
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
  await redis?.stop();
});

async function node(): Promise<TestServer> {
  const s = await startTestServer({ redisUrl: redis.url });
  servers.push(s);
  return s;
}

describe('with TIDINGS_REDIS_URL', () => {
  it('uses the Redis bus: an event published on one node reaches a subscriber of another, then replays from its cursor', async () => {
    const a = await node();
    const b = await node();
    expect(a.ctx.bus.constructor.name).toBe('RedisBus');
    const token = await a.token(['user:9']);
    const { c, welcome } = await subscribe(b.wsUrl, token, { 'user:9': null });
    const res = await fetch(`${a.url}/v1/publish`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_PUBLISHER_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ channel: 'user:9', data: 'hi' }),
    });
    const { cursor } = (await res.json()) as { cursor: string };
    expect(await c.next(8000)).toEqual({ type: 'event', channel: 'user:9', cursor, data: 'hi' });
    c.ws.close();

    // Resume on node a from the head that b's welcome gave.
    const head = (welcome.channels as Record<string, string>)['user:9']!;
    const again = await subscribe(a.wsUrl, token, { 'user:9': head });
    expect(await again.c.next(8000)).toEqual({ type: 'event', channel: 'user:9', cursor, data: 'hi' });
    again.c.ws.close();
  });
});
