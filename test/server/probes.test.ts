// Issue 11, defect 3: probes during Redis outages, with a real redis-server.
// Killed: the connection drops, readiness fails at once, /healthz stays 200 (a
// liveness probe on it must not restart every pod). Frozen (SIGSTOP): the TCP
// connection stays up and ioredis still says "ready", so only a PING with a
// timeout shows it.
import { afterEach, describe, expect, it } from 'vitest';
import { startRedis, type TestRedis } from '../support/redis.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { Writable } from 'node:stream';
import { createLogger } from '../../server/log.js';
import { TEST_PUBLISHER_KEY } from '../support/context.js';

let servers: TestServer[] = [];
let redis: TestRedis | null = null;
afterEach(async () => {
  redis?.thaw();
  await Promise.all(servers.map((s) => s.close()));
  servers = [];
  await redis?.stop();
  redis = null;
});

async function probes(s: TestServer): Promise<Record<string, [number, string]>> {
  const out: Record<string, [number, string]> = {};
  for (const p of ['livez', 'readyz', 'healthz']) {
    const r = await fetch(`${s.url}/${p}`);
    out[p] = [r.status, (await r.text()).trim()];
  }
  return out;
}

describe('probes with a Redis bus', () => {
  it('Redis killed: livez 200, readyz 503, healthz 200 "ok (bus unreachable)"; all 200 again once it is back', async () => {
    redis = await startRedis();
    const s = await startTestServer({ redisUrl: redis.url });
    servers.push(s);
    expect(await probes(s)).toEqual({ livez: [200, 'ok'], readyz: [200, 'ok'], healthz: [200, 'ok'] });
    await redis.kill();
    await expect.poll(() => probes(s), { timeout: 5000 }).toEqual({
      livez: [200, 'ok'], readyz: [503, 'bus unreachable'], healthz: [200, 'ok (bus unreachable)'],
    });
    await redis.start();
    await expect.poll(() => probes(s), { timeout: 10_000 }).toEqual({ livez: [200, 'ok'], readyz: [200, 'ok'], healthz: [200, 'ok'] });
  });

  it('Redis frozen (SIGSTOP): readyz 503 within the ping timeout, livez and healthz 200; ready again after SIGCONT', async () => {
    redis = await startRedis();
    const s = await startTestServer({ redisUrl: redis.url });
    servers.push(s);
    expect((await fetch(`${s.url}/readyz`)).status).toBe(200);
    redis.freeze();
    const t0 = Date.now();
    expect(await probes(s)).toEqual({ livez: [200, 'ok'], readyz: [503, 'bus did not answer within 1000 ms'], healthz: [200, 'ok'] });
    expect(Date.now() - t0).toBeLessThan(3000);
    // Probes that overlap share one PING instead of queueing one each behind the frozen server.
    const many = await Promise.all([0, 1, 2, 3].map(() => fetch(`${s.url}/readyz`).then((r) => r.status)));
    expect(many).toEqual([503, 503, 503, 503]);
    redis.thaw();
    await expect.poll(async () => (await fetch(`${s.url}/readyz`)).status, { timeout: 5000 }).toBe(200);
  });
});

describe('logs during a Redis outage', () => {
  /** A server on a fresh Redis whose log lines (parsed) are collected in `lines`. */
  async function serverOnRedisWithLogLines() {
    const r = await startRedis();
    redis = r;
    const lines: { level: number; msg: string }[] = [];
    const destination = new Writable({ write(chunk, _e, cb) { lines.push(JSON.parse(String(chunk))); cb(); } });
    const s = await startTestServer({ redisUrl: r.url, logLevel: 'info' }, { log: createLogger({ level: 'info', destination }) });
    servers.push(s);
    return { s, lines, redis: r };
  }

  it('logs the outage even when Redis is back before a reconnect attempt fails (a clean close brings no error event)', async () => {
    const { lines, redis } = await serverOnRedisWithLogLines();
    await redis.restart();
    await expect.poll(() => lines.some((l) => l.msg === 'redis reconnected'), { timeout: 10_000 }).toBe(true);
    expect(lines.filter((l) => l.level >= 40).map((l) => l.msg)).toEqual(['redis connection error; reconnecting with backoff']);
  });

  it('one warn line when Redis goes, one info line when it is back; none per refused publish', async () => {
    const { s, lines, redis } = await serverOnRedisWithLogLines();
    await redis.kill();
    await expect.poll(async () => (await fetch(`${s.url}/readyz`)).status, { timeout: 5000 }).toBe(503);
    for (let i = 0; i < 10; i++) {
      const r = await fetch(`${s.url}/v1/publish`, {
        method: 'POST', headers: { authorization: `Bearer ${TEST_PUBLISHER_KEY}`, 'content-type': 'application/json' }, body: '{"channel":"a","data":1}',
      });
      expect(r.status).toBe(503);
    }
    await redis.start();
    await expect.poll(async () => (await fetch(`${s.url}/readyz`)).status, { timeout: 10_000 }).toBe(200);
    const noisy = lines.filter((l) => l.level >= 40);
    expect(noisy.map((l) => l.msg)).toEqual(['redis connection error; reconnecting with backoff']);
    expect(lines.filter((l) => l.msg === 'redis reconnected')).toHaveLength(1);
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    expect(metrics).toContain('tidings_bus_errors_total{op="publish"} 10');
  });
});
