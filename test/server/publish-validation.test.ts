// Issue 12, items 6 and 9: both buses accept and refuse exactly the same events,
// before anything is stored; a batch is all or nothing; payloads never reach a
// log line; a non-GET upgrade on /v1/ws is a 4xx.
import net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { dataProblem } from '../../server/pubsub/data-check.js';
import { createLogger } from '../../server/log.js';
import type { Bus } from '../../server/pubsub/bus.js';
import { MemoryBus } from '../../server/pubsub/memory-bus.js';
import { TEST_PUBLISHER_KEY } from '../support/context.js';
import { startRedis, type TestRedis } from '../support/redis.js';
import { startTestServer, type TestServer } from '../support/server.js';

/** `depth` nested arrays around 1: `[[...[1]...]]`, as JSON text. */
const nested = (depth: number) => '['.repeat(depth) + '1' + ']'.repeat(depth);

describe('dataProblem (pure)', () => {
  it('counts nesting: accepts exactly maxDepth levels, refuses one more', () => {
    expect(dataProblem(JSON.parse(nested(100)), 100)).toBeNull();
    expect(dataProblem(JSON.parse(nested(101)), 100)).toMatch(/deeper than 100/);
    expect(dataProblem({ a: { b: [] } }, 3)).toBeNull();
    expect(dataProblem({ a: { b: [] } }, 2)).toMatch(/deeper/);
    expect(dataProblem('scalar', 1)).toBeNull();
  });
  it('refuses a lone surrogate in a value or a key, accepts a pair', () => {
    expect(dataProblem(JSON.parse('"\\ud800"'), 100)).toMatch(/lone surrogate/);
    expect(dataProblem(JSON.parse('{"\\udc00":1}'), 100)).toMatch(/lone surrogate/);
    expect(dataProblem(JSON.parse('["ok","\\ud83d\\ude00"]'), 100)).toBeNull();
  });
  it('walks a hostile depth without recursion (100,000 levels)', () => {
    expect(dataProblem(JSON.parse(nested(100_000)), 100)).toMatch(/deeper/);
  });
});

let redis: TestRedis;
const servers: TestServer[] = [];
beforeAll(async () => { redis = await startRedis(); });
afterEach(async () => { await Promise.all(servers.splice(0).map((s) => s.close())); });
afterAll(async () => { await redis?.stop(); });

async function publishRaw(s: TestServer, body: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${s.url}/v1/publish`, {
    method: 'POST', headers: { authorization: `Bearer ${TEST_PUBLISHER_KEY}`, 'content-type': 'application/json' }, body,
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

describe.each(['memory', 'redis'] as const)('publish on the %s bus', (kind) => {
  let n = 0;
  const start = async (): Promise<TestServer> => {
    const s = await startTestServer(kind === 'redis' ? { redisUrl: redis.url } : {});
    servers.push(s);
    return s;
  };
  const ch = () => `pv:${kind}:${++n}`;

  it('accepts data nested exactly maxDataDepth (100) levels, answers 400 one level deeper and at 1,001 levels', async () => {
    const s = await start();
    const c = ch();
    expect((await publishRaw(s, `{"channel":"${c}","data":${nested(100)}}`)).status).toBe(200);
    for (const depth of [101, 1001]) {
      const r = await publishRaw(s, `{"channel":"${c}","data":${nested(depth)}}`);
      expect(r.status).toBe(400);
      expect(r.json).toMatchObject({ error: 'bad_event', message: expect.stringContaining('deeper than 100') });
    }
  });

  it('answers 400 for a lone surrogate, 200 for a surrogate pair', async () => {
    const s = await start();
    const r = await publishRaw(s, `{"channel":"${ch()}","data":"\\ud800"}`);
    expect(r.status).toBe(400);
    expect(r.json.message).toMatch(/lone surrogate/);
    expect((await publishRaw(s, `{"channel":"${ch()}","data":"\\ud83d\\ude00"}`)).status).toBe(200);
  });

  it('refuses a whole batch when one event is bad: nothing of it is stored', async () => {
    const s = await start();
    const c = ch();
    const head = await s.ctx.bus.head(c);
    const r = await publishRaw(s, JSON.stringify({ events: [{ channel: c, data: 1 }, { channel: c, data: 2 }] }).replace('"data":2', `"data":${nested(1001)}`));
    expect(r.status).toBe(400);
    expect(r.json.message).toMatch(/^events\[1\]: /);
    expect(await s.ctx.bus.head(c)).toBe(head);
    expect(await s.ctx.bus.readAfter(c, head)).toEqual({ kind: 'events', events: [] });
  });
});

describe('a publish the bus fails', () => {
  it('answers 500 and logs no payload', async () => {
    const lines: string[] = [];
    const log = createLogger({ level: 'info', destination: { write: (l: string) => { lines.push(l); } } });
    const bus: Bus = new MemoryBus();
    const secret = 'PERSONAL-DATA-' + 'x'.repeat(100);
    bus.publish = async (events) => {
      // What an ioredis ReplyError looks like: the command and its arguments ride along.
      throw Object.assign(new Error('ERR something went wrong'), { name: 'ReplyError', command: { name: 'fcall', args: events.map((e) => e.json) } });
    };
    const s = await startTestServer({ logLevel: 'info' }, { bus, log });
    servers.push(s);
    const r = await publishRaw(s, JSON.stringify({ channel: 'a', data: secret }));
    expect(r.status).toBe(500);
    expect(r.json.error).toBe('internal');
    const text = lines.join('');
    expect(text).toContain('publish failed');
    expect(text).not.toContain('PERSONAL-DATA');
  });
});

describe('POST /v1/ws with upgrade headers (item 9)', () => {
  it.each(['POST', 'PUT', 'DELETE'])('%s is answered 405 with Allow: GET, never 503 nor 101', async (method) => {
    const s = await startTestServer();
    servers.push(s);
    const sock = net.connect(s.port, '127.0.0.1');
    let got = '';
    sock.on('data', (d) => { got += d.toString('latin1'); });
    sock.on('error', () => {});
    await new Promise((r) => sock.once('connect', r));
    sock.write([`${method} /v1/ws HTTP/1.1`, 'Host: x', 'Upgrade: websocket', 'Connection: Upgrade',
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version: 13', 'Content-Length: 0', '', ''].join('\r\n'));
    await new Promise((r) => sock.once('close', r));
    expect(got.slice(0, 12)).toBe('HTTP/1.1 405');
    expect(got).toMatch(/\r\nAllow: GET\r\n/i);
  });
});
