// The HTTP side over real loopback sockets: createHttpHandler on a plain
// http.createServer, the in-memory bus, and a manual clock for long-poll deadlines.
import { Agent, createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Config } from '../../server/config.js';
import { createHttpHandler, type HttpHandler } from '../../server/http/router.js';
import { publishBodyLimit } from '../../server/http/publish.js';
import { BusUnavailableError } from '../../server/pubsub/bus.js';
import { MemoryBus } from '../../server/pubsub/memory-bus.js';
import { makeTestContext, TEST_EPOCH, TEST_PUBLISHER_KEY, type TestContext } from '../support/context.js';

const E = TEST_EPOCH;

interface Res {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: () => any;
}

interface Harness {
  ctx: TestContext;
  handler: HttpHandler;
  server: Server;
  port: number;
  clock: { t: number };
  send(method: string, path: string, opts?: { headers?: Record<string, string>; body?: string | Buffer; signal?: AbortSignal }): Promise<Res>;
  poll(channels: string, headers?: Record<string, string>): Promise<Res>;
  publish(body: unknown, headers?: Record<string, string>): Promise<Res>;
}

let open: Harness[] = [];

async function start(over: { config?: Partial<Config>; draining?: boolean; bus?: MemoryBus; pollBudgetBytes?: number } = {}): Promise<Harness> {
  const ctx = makeTestContext(over);
  const clock = { t: 1_000_000 };
  const handler = createHttpHandler(ctx, { now: () => clock.t, sweepIntervalMs: 0, random: () => 0, pollBudgetBytes: over.pollBudgetBytes });
  const server = createServer(handler);
  server.on('upgrade', handler.upgrade);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const send: Harness['send'] = (method, path, opts = {}) =>
    new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, method, path, headers: opts.headers, signal: opts.signal, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: res.statusCode!, headers: res.headers, text, json: () => JSON.parse(text) });
        });
      });
      req.on('error', reject);
      req.end(opts.body);
    });
  const h: Harness = {
    ctx, handler, server, port, clock, send,
    async poll(channels, headers = {}) {
      const token = headers.authorization === undefined ? await ctx.token(['a', 'b', 'user:42', 'news']) : undefined;
      return send('GET', `/v1/poll?channels=${encodeURIComponent(channels)}`, {
        headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
      });
    },
    publish(body, headers = {}) {
      return send('POST', '/v1/publish', {
        headers: { authorization: `Bearer ${TEST_PUBLISHER_KEY}`, 'content-type': 'application/json', ...headers },
        body: typeof body === 'string' ? body : JSON.stringify(body),
      });
    },
  };
  open.push(h);
  return h;
}

afterEach(async () => {
  for (const h of open) {
    h.handler.close();
    h.server.closeAllConnections();
    await new Promise((r) => h.server.close(r));
    await h.ctx.close();
  }
  open = [];
});

/** Wait (on I/O turns, not a fixed sleep) until the server holds `n` long-polls. */
async function heldCount(h: Harness, n: number): Promise<void> {
  await vi.waitFor(() => expect(h.handler.held.size).toBe(n), { timeout: 5000, interval: 5 });
}

describe('GET /v1/poll', () => {
  it('answers 200 with no events and the heads as ETag when there is no If-None-Match', async () => {
    const h = await start();
    await h.ctx.bus.publish([{ channel: 'a', json: '1' }]);
    const r = await h.poll('b,a');
    expect(r.status).toBe(200);
    expect(r.json()).toEqual({ messages: [] });
    expect(r.headers.etag).toBe(`"a=${E}-1;b=${E}-0"`);
    expect(r.headers['cache-control']).toBe('no-cache, private');
    expect(r.headers['x-poll-interval']).toBe('5');
    expect(r.headers['content-type']).toBe('application/json');
  });

  it('answers 304 with ETag, Cache-Control and X-Poll-Interval when If-None-Match equals the heads', async () => {
    const h = await start();
    await h.ctx.bus.publish([{ channel: 'a', json: '1' }]);
    const r = await h.poll('a,b', { 'if-none-match': `"a=${E}-1;b=${E}-0"` });
    expect(r.status).toBe(304);
    expect(r.text).toBe('');
    expect(r.headers.etag).toBe(`"a=${E}-1;b=${E}-0"`);
    expect(r.headers['cache-control']).toBe('no-cache, private');
    expect(r.headers['x-poll-interval']).toBe('5');
  });

  it('compares weakly: a W/ validator equal to the heads is a 304', async () => {
    const h = await start();
    expect((await h.poll('a', { 'if-none-match': `W/"a=${E}-0"` })).status).toBe(304);
  });

  it('answers 304 when any tag of a list matches the heads', async () => {
    const h = await start();
    await h.ctx.bus.publish([{ channel: 'a', json: '1' }]);
    expect((await h.poll('a', { 'if-none-match': `"a=${E}-0", "a=${E}-1"` })).status).toBe(304);
  });

  it('answers a weak validator equal to the heads with the strong ETag', async () => {
    const h = await start();
    const r = await h.poll('a', { 'if-none-match': `W/"a=${E}-0"` });
    expect([r.status, r.headers.etag]).toEqual([304, `"a=${E}-0"`]);
  });

  it('answers 200 with the events when the one-channel validator is behind the head', async () => {
    const h = await start();
    await h.ctx.bus.publish([{ channel: 'a', json: '1' }, { channel: 'a', json: '2' }]);
    const r = await h.poll('a', { 'if-none-match': `"a=${E}-1"` });
    expect(r.status).toBe(200);
    expect(r.json().messages).toEqual([{ type: 'event', channel: 'a', cursor: `${E}-2`, data: 2 }]);
    expect(r.headers.etag).toBe(`"a=${E}-2"`);
  });

  it('carries the CORS headers of an allowed Origin on a 304', async () => {
    const h = await start({ config: { allowedOrigins: ['https://app.example'] } });
    const r = await h.poll('a', { origin: 'https://app.example', 'if-none-match': `"a=${E}-0"` });
    expect(r.status).toBe(304);
    expect(r.headers['access-control-allow-origin']).toBe('https://app.example');
    expect(r.headers['access-control-expose-headers']).toBe('ETag, X-Poll-Interval, Retry-After, Preference-Applied');
    expect(r.headers.vary).toBe('Origin');
    expect(r.headers['cache-control']).toBe('no-cache, private');
    expect(r.headers['x-poll-interval']).toBe('5');
  });

  it('reads the token afresh when a keep-alive connection sends another one', async () => {
    const h = await start();
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const get = (authorization: string | undefined) => new Promise<[number, number]>((resolve, reject) => {
      const headers = authorization === undefined ? {} : { authorization };
      request({ host: '127.0.0.1', port: h.port, path: '/v1/poll?channels=a', agent, headers }, (res) => {
        const port = res.socket.localPort!;
        res.resume();
        res.on('end', () => resolve([res.statusCode!, port]));
      }).on('error', reject).end();
    });
    const ta = `Bearer ${await h.ctx.token(['a'])}`;
    const tb = `Bearer ${await h.ctx.token(['b'])}`;
    const got = [await get(ta), await get(tb), await get(ta), await get('Bearer garbage'), await get(undefined), await get(ta)];
    agent.destroy();
    expect(got.map((g) => g[0])).toEqual([200, 403, 200, 401, 401, 200]);
    expect(new Set(got.map((g) => g[1])).size).toBe(1); // all on one connection
  });

  it('treats If-None-Match: * as the current heads (304)', async () => {
    const h = await start();
    const r = await h.poll('a', { 'if-none-match': '*' });
    expect(r.status).toBe(304);
    expect(r.headers.etag).toBe(`"a=${E}-0"`);
  });

  it('answers 200 with the events after each cursor, in order, and the cursors after them as ETag', async () => {
    const h = await start();
    await h.ctx.bus.publish([
      { channel: 'a', json: '{"n":1}' }, { channel: 'b', json: '"x"' }, { channel: 'a', json: '{"n":2}' }, { channel: 'a', json: 'null' },
    ]);
    const r = await h.poll('a,b', { 'if-none-match': `"a=${E}-1;b=${E}-1"` });
    expect(r.status).toBe(200);
    expect(r.json()).toEqual({
      messages: [
        { type: 'event', channel: 'a', cursor: `${E}-2`, data: { n: 2 } },
        { type: 'event', channel: 'a', cursor: `${E}-3`, data: null },
      ],
    });
    expect(r.headers.etag).toBe(`"a=${E}-3;b=${E}-1"`);
  });

  it('cuts a large answer at the byte budget, asks to come back at once, and the next poll continues', async () => {
    const h = await start({ pollBudgetBytes: 200 });
    const data = 'x'.repeat(100); // each message is well over 100 bytes: one per answer
    await h.ctx.bus.publish([1, 2, 3].map(() => ({ channel: 'a', json: JSON.stringify(data) })));
    const r1 = await h.poll('a', { 'if-none-match': `"a=${E}-0"` });
    expect(r1.json().messages.map((m: { cursor: string }) => m.cursor)).toEqual([`${E}-1`]);
    expect(r1.headers['x-poll-interval']).toBe('0');
    expect(r1.headers.etag).toBe(`"a=${E}-1"`);
    const r2 = await h.poll('a', { 'if-none-match': r1.headers.etag as string });
    expect(r2.json().messages.map((m: { cursor: string }) => m.cursor)).toEqual([`${E}-2`]);
    const r3 = await h.poll('a', { 'if-none-match': `"a=${E}-2"` });
    expect(r3.headers['x-poll-interval']).toBe('5'); // the last one: nothing more pending
    expect(r3.headers.etag).toBe(`"a=${E}-3"`);
  });

  it('sends a reset with the head for a cursor from another server start', async () => {
    const h = await start();
    await h.ctx.bus.publish([{ channel: 'a', json: '1' }, { channel: 'a', json: '2' }]);
    const r = await h.poll('a', { 'if-none-match': '"a=oldepoch-2"' });
    expect(r.status).toBe(200);
    expect(r.json()).toEqual({ messages: [{ type: 'reset', channel: 'a', cursor: `${E}-2` }] });
    expect(r.headers.etag).toBe(`"a=${E}-2"`);
  });

  it('sends a reset when the cursor is older than the retained history', async () => {
    const h = await start({ config: { history: 2 } });
    await h.ctx.bus.publish([1, 2, 3].map((n) => ({ channel: 'a', json: String(n) })));
    const r = await h.poll('a', { 'if-none-match': `"a=${E}-0"` });
    expect(r.json()).toEqual({ messages: [{ type: 'reset', channel: 'a', cursor: `${E}-3` }] });
  });

  it('sends a reset for a requested channel missing from the validator (it cannot be proved complete)', async () => {
    // Before: 200 with no messages and the head in the ETag: the client silently lost b's event.
    const h = await start();
    await h.ctx.bus.publish([{ channel: 'b', json: '1' }]);
    const r = await h.poll('a,b', { 'if-none-match': `"a=${E}-0"` });
    expect(r.status).toBe(200);
    expect(r.json()).toEqual({ messages: [{ type: 'reset', channel: 'b', cursor: `${E}-1` }] });
    expect(r.headers.etag).toBe(`"a=${E}-0;b=${E}-1"`);
  });

  it('sends a reset per channel for an empty validator (If-None-Match: "")', async () => {
    const h = await start();
    await h.ctx.bus.publish([{ channel: 'a', json: '1' }]);
    const r = await h.poll('a,b', { 'if-none-match': '""' });
    expect(r.status).toBe(200);
    expect(r.json()).toEqual({ messages: [
      { type: 'reset', channel: 'a', cursor: `${E}-1` }, { type: 'reset', channel: 'b', cursor: `${E}-0` },
    ] });
    expect(r.headers.etag).toBe(`"a=${E}-1;b=${E}-0"`);
    // Long-poll too: answered at once, not held.
    const w = await h.poll('a', { 'if-none-match': '""', prefer: 'wait=5' });
    expect(w.json().messages).toEqual([{ type: 'reset', channel: 'a', cursor: `${E}-1` }]);
  });

  it.each([
    ['not an entity tag', 'a=x-1'],
    ['a bad channel in the validator', '"a b=x-1"'],
    ['a cursor outside the alphabet', '"a=x+1"'],
  ])('answers 400 bad_validator for %s', async (_n, inm) => {
    const h = await start();
    const r = await h.poll('a', { 'if-none-match': inm });
    expect(r.status).toBe(400);
    expect(r.json().error).toBe('bad_validator');
    expect(r.headers['x-poll-interval']).toBe('5');
    expect(r.headers['cache-control']).toBe('no-cache, private');
  });

  it.each([
    ['missing', ''],
    ['a bad name', 'a,b c'],
    ['an empty element', 'a,,b'],
  ])('answers 400 bad_channels for %s channel list', async (_n, list) => {
    const h = await start();
    const r = await h.poll(list);
    expect(r.status).toBe(400);
    expect(r.json()).toMatchObject({ error: 'bad_channels' });
    expect(typeof r.json().message).toBe('string');
  });

  it('accepts exactly maxChannels channels and refuses one more with 400', async () => {
    const h = await start({ config: { maxChannels: 3 } });
    const t = await h.ctx.token(['c1', 'c2', 'c3', 'c4']);
    expect((await h.poll('c1,c2,c3', { authorization: `Bearer ${t}` })).status).toBe(200);
    const r = await h.poll('c1,c2,c3,c4', { authorization: `Bearer ${t}` });
    expect(r.status).toBe(400);
    expect(r.json().error).toBe('bad_channels');
  });

  it('answers 401 token_missing with a Bearer challenge when there is no token', async () => {
    const h = await start();
    const r = await h.send('GET', '/v1/poll?channels=a');
    expect(r.status).toBe(401);
    expect(r.json().error).toBe('token_missing');
    expect(r.headers['www-authenticate']).toBe('Bearer realm="tidings"');
  });

  it('answers 401 for a token signed with another secret, and for an expired one', async () => {
    const h = await start();
    const other = makeTestContext({ config: { subscriberSecret: 'another-secret-another-secret-xx' } });
    const bad = await other.token(['a']);
    await other.close();
    const r1 = await h.poll('a', { authorization: `Bearer ${bad}` });
    expect(r1.status).toBe(401);
    expect(r1.json().error).toBe('token_invalid');
    expect(r1.headers['www-authenticate']).toContain('error="invalid_token"');
    const expired = await h.ctx.token(['a'], { ttlSeconds: -10 });
    const r2 = await h.poll('a', { authorization: `Bearer ${expired}` });
    expect(r2.status).toBe(401);
    expect(r2.json().error).toBe('token_expired');
  });

  it('answers 403 channel_forbidden for a channel the token does not grant', async () => {
    const h = await start();
    const t = await h.ctx.token(['a']);
    const r = await h.poll('a,secret', { authorization: `Bearer ${t}` });
    expect(r.status).toBe(403);
    expect(r.json()).toMatchObject({ error: 'channel_forbidden' });
    expect(r.json().message).toContain('secret');
  });

  it('holds a long-poll and answers 200 with the event as soon as it is published', async () => {
    const h = await start();
    const pending = h.poll('a,b', { 'if-none-match': `"a=${E}-0;b=${E}-0"`, prefer: 'wait=20' });
    await heldCount(h, 1);
    expect((h.ctx.bus as MemoryBus).isWatched('b')).toBe(true);
    await h.ctx.bus.publish([{ channel: 'b', json: '{"hi":1}' }]);
    const r = await pending;
    expect(r.status).toBe(200);
    expect(r.headers['preference-applied']).toBe('wait=20');
    expect(r.json()).toEqual({ messages: [{ type: 'event', channel: 'b', cursor: `${E}-1`, data: { hi: 1 } }] });
    expect(r.headers.etag).toBe(`"a=${E}-0;b=${E}-1"`);
    expect(h.handler.held.size).toBe(0);
    expect((h.ctx.bus as MemoryBus).isWatched('b')).toBe(false);
  });

  it('answers a long-poll 304 at its deadline, not before (manual clock, one sweep)', async () => {
    const h = await start();
    let done = false;
    const pending = h.poll('a', { 'if-none-match': `"a=${E}-0"`, prefer: 'wait=10' }).finally(() => { done = true; });
    await heldCount(h, 1);
    h.clock.t += 9_999;
    h.handler.held.sweep();
    await new Promise((r) => setImmediate(r));
    expect(h.handler.held.size).toBe(1);
    expect(done).toBe(false);
    h.clock.t += 1;
    h.handler.held.sweep();
    const r = await pending;
    expect(r.status).toBe(304);
    expect(r.headers['preference-applied']).toBe('wait=10');
    expect(r.headers.etag).toBe(`"a=${E}-0"`);
  });

  it('caps Prefer: wait at maxPollWaitS and says so in Preference-Applied', async () => {
    const h = await start({ config: { maxPollWaitS: 2 } });
    const pending = h.poll('a', { 'if-none-match': `"a=${E}-0"`, prefer: 'respond-async, wait=100' });
    await heldCount(h, 1);
    h.clock.t += 2_000;
    h.handler.held.sweep();
    const r = await pending;
    expect(r.status).toBe(304);
    expect(r.headers['preference-applied']).toBe('wait=2');
  });

  it('does not park a long-poll when an event lands while it reads history (no lost wake-up)', async () => {
    class RacyBus extends MemoryBus {
      raced = false;
      override async readAfter(channel: string, cursor: string) {
        const stale = await super.readAfter(channel, cursor);
        if (!this.raced) {
          this.raced = true;
          await this.publish([{ channel, json: '"late"' }]); // lands after the read, before the park
        }
        return stale;
      }
    }
    const h = await start({ bus: new RacyBus({ epoch: E }) });
    const r = await h.poll('a', { 'if-none-match': `"a=${E}-0"`, prefer: 'wait=30' });
    expect(r.status).toBe(200);
    expect(r.json().messages).toEqual([{ type: 'event', channel: 'a', cursor: `${E}-1`, data: 'late' }]);
    expect(h.handler.held.size).toBe(0);
  });

  it('does not hold when there is news already: 200 at once with Preference-Applied', async () => {
    const h = await start();
    await h.ctx.bus.publish([{ channel: 'a', json: '1' }]);
    const r = await h.poll('a', { 'if-none-match': `"a=${E}-0"`, prefer: 'wait=30' });
    expect(r.status).toBe(200);
    expect(r.headers['preference-applied']).toBe('wait=30');
    expect(h.handler.held.size).toBe(0);
  });

  it('holds exactly maxHeldPolls long-polls and answers the next 503 with Retry-After', async () => {
    const h = await start({ config: { maxHeldPolls: 1 } });
    const first = h.poll('a', { 'if-none-match': `"a=${E}-0"`, prefer: 'wait=5' });
    await heldCount(h, 1);
    const r = await h.poll('a', { 'if-none-match': `"a=${E}-0"`, prefer: 'wait=5' });
    expect(r.status).toBe(503);
    expect(r.json().error).toBe('over_capacity');
    expect(Number(r.headers['retry-after'])).toBeGreaterThan(0);
    expect(h.handler.held.size).toBe(1);
    // A plain poll is not held, so the limit does not apply to it.
    expect((await h.poll('a', { 'if-none-match': `"a=${E}-0"` })).status).toBe(304);
    await h.ctx.bus.publish([{ channel: 'a', json: '1' }]);
    expect((await first).status).toBe(200);
  });

  it('drops a held long-poll whose client went away, and unwatches its channels', async () => {
    const h = await start();
    const ac = new AbortController();
    const pending = h.poll('a', { 'if-none-match': `"a=${E}-0"`, prefer: 'wait=20' });
    void pending.catch(() => {});
    const t = await h.ctx.token(['a']);
    const aborted = h.send('GET', '/v1/poll?channels=a', {
      headers: { authorization: `Bearer ${t}`, 'if-none-match': `"a=${E}-0"`, prefer: 'wait=20' }, signal: ac.signal,
    });
    await heldCount(h, 2);
    ac.abort();
    await expect(aborted).rejects.toThrow();
    await heldCount(h, 1);
    await h.ctx.bus.publish([{ channel: 'a', json: '1' }]);
    expect((await pending).status).toBe(200);
    expect((h.ctx.bus as MemoryBus).isWatched('a')).toBe(false);
  });

  it('answers 503 draining with Retry-After while draining, and releases held polls on the next sweep', async () => {
    const h = await start();
    const pending = h.poll('a', { 'if-none-match': `"a=${E}-0"`, prefer: 'wait=30' });
    await heldCount(h, 1);
    h.ctx.draining = true;
    h.handler.held.sweep();
    expect((await pending).status).toBe(304);
    const r = await h.poll('a');
    expect(r.status).toBe(503);
    expect(r.json().error).toBe('draining');
    expect(r.headers['retry-after']).toBe('1');
  });

  it('answers 503 bus_unavailable with the bus\'s Retry-After when history cannot be read', async () => {
    const bus = new MemoryBus({ epoch: E });
    bus.readAfter = async () => { throw new BusUnavailableError('redis down', 7); };
    const h = await start({ bus });
    const r = await h.poll('a', { 'if-none-match': `"a=${E}-0"` });
    expect(r.status).toBe(503);
    expect(r.json().error).toBe('bus_unavailable');
    expect(r.headers['retry-after']).toBe('7');
    expect(r.headers['x-poll-interval']).toBe('5');
  });

  it('answers a held long-poll 503 when the bus fails at wake-up, and forgets it', async () => {
    const bus = new MemoryBus({ epoch: E });
    const h = await start({ bus });
    const pending = h.poll('a', { 'if-none-match': `"a=${E}-0"`, prefer: 'wait=20' });
    await heldCount(h, 1);
    bus.readAfter = async () => { throw new BusUnavailableError('redis down', 3); };
    h.clock.t += 20_000;
    h.handler.held.sweep();
    const r = await pending;
    expect([r.status, r.headers['retry-after']]).toEqual([503, '3']);
    expect(h.handler.held.size).toBe(0);
    expect(bus.isWatched('a')).toBe(false);
  });

  it('answers 500 internal with the poll headers for an unexpected failure', async () => {
    const bus = new MemoryBus({ epoch: E });
    bus.head = async () => { throw new Error('boom'); };
    const h = await start({ bus });
    const r = await h.poll('a');
    expect(r.status).toBe(500);
    expect(r.json()).toEqual({ error: 'internal', message: 'internal error' });
    expect(r.headers['cache-control']).toBe('no-cache, private');
  });

  it('answers every held long-poll at once when the handler is closed (shutdown)', async () => {
    const h = await start();
    const pending = h.poll('a', { 'if-none-match': `"a=${E}-0"`, prefer: 'wait=30' });
    await heldCount(h, 1);
    h.handler.close();
    const r = await pending;
    expect(r.status).toBe(304);
    expect(h.handler.held.size).toBe(0);
  });

  it('counts poll responses by status in the metrics', async () => {
    const h = await start();
    await h.poll('a');
    await h.poll('a', { 'if-none-match': `"a=${E}-0"` });
    await h.send('GET', '/v1/poll?channels=a');
    const text = await h.ctx.metrics.registry.metrics();
    expect(text).toContain('tidings_poll_responses_total{status="200"} 1');
    expect(text).toContain('tidings_poll_responses_total{status="304"} 1');
    expect(text).toContain('tidings_poll_responses_total{status="401"} 1');
  });
});

describe('CORS', () => {
  it('answers a preflight with the allowed methods and headers, reflecting the Origin', async () => {
    const h = await start();
    const r = await h.send('OPTIONS', '/v1/poll?channels=a', {
      headers: { origin: 'https://app.example', 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization, prefer' },
    });
    expect(r.status).toBe(204);
    expect(r.headers['access-control-allow-origin']).toBe('https://app.example');
    expect(r.headers['access-control-allow-headers']).toBe('Authorization, Content-Type, Prefer, If-None-Match');
    expect(r.headers['access-control-allow-methods']).toContain('GET');
    expect(r.headers['access-control-allow-credentials']).toBeUndefined();
    expect(r.headers.vary).toContain('Origin');
  });

  it('reflects an allowed Origin on the actual response and exposes the poll headers', async () => {
    const h = await start({ config: { allowedOrigins: ['https://app.example'] } });
    const r = await h.poll('a', { origin: 'https://app.example' });
    expect(r.status).toBe(200);
    expect(r.headers['access-control-allow-origin']).toBe('https://app.example');
    expect(r.headers['access-control-expose-headers']).toBe('ETag, X-Poll-Interval, Retry-After, Preference-Applied');
    expect(r.headers.vary).toBe('Origin');
  });

  it('refuses an Origin not on the allow-list with 403 and no CORS grant', async () => {
    const h = await start({ config: { allowedOrigins: ['https://app.example'] } });
    const pre = await h.send('OPTIONS', '/v1/poll', { headers: { origin: 'https://evil.example', 'access-control-request-method': 'GET' } });
    expect(pre.status).toBe(403);
    expect(pre.headers['access-control-allow-origin']).toBeUndefined();
    const r = await h.poll('a', { origin: 'https://evil.example' });
    expect(r.status).toBe(403);
    expect(r.json().error).toBe('origin_forbidden');
    expect(r.headers['x-poll-interval']).toBe('5');
    expect(r.headers['cache-control']).toBe('no-cache, private');
  });

  it('sends Vary: Origin even to requests without an Origin', async () => {
    const h = await start();
    expect((await h.poll('a')).headers.vary).toBe('Origin');
  });
});

describe('POST /v1/publish', () => {
  it('publishes one event and answers its cursor; a poll then delivers it', async () => {
    const h = await start();
    const r = await h.publish({ channel: 'user:42', data: { folder: 'inbox', unread: 3 } });
    expect(r.status).toBe(200);
    expect(r.json()).toEqual({ cursor: `${E}-1` });
    const p = await h.poll('user:42', { 'if-none-match': `"user:42=${E}-0"` });
    expect(p.json().messages).toEqual([{ type: 'event', channel: 'user:42', cursor: `${E}-1`, data: { folder: 'inbox', unread: 3 } }]);
  });

  it('serializes data once, compactly, whatever whitespace the publisher sent', async () => {
    const h = await start();
    await h.publish('{ "channel": "a", "data": { "x" :  [1, 2] } }');
    const r = await h.ctx.bus.readAfter('a', `${E}-0`);
    expect(r).toEqual({ kind: 'events', events: [{ channel: 'a', cursor: `${E}-1`, json: '{"x":[1,2]}' }] });
  });

  it('publishes a batch and answers the cursors in order', async () => {
    const h = await start();
    const r = await h.publish({ events: [{ channel: 'a', data: 1 }, { channel: 'b', data: null }, { channel: 'a', data: 'x' }] });
    expect(r.status).toBe(200);
    expect(r.json()).toEqual({ cursors: [`${E}-1`, `${E}-1`, `${E}-2`] });
    expect((await h.ctx.metrics.publishes.get()).values[0]!.value).toBe(3);
  });

  it('answers 401 for a wrong or missing publisher key, and publishes nothing', async () => {
    const h = await start();
    const r = await h.publish({ channel: 'a', data: 1 }, { authorization: 'Bearer nope' });
    expect(r.status).toBe(401);
    expect(r.json().error).toBe('bad_publisher_key');
    const r2 = await h.send('POST', '/v1/publish', { body: '{"channel":"a","data":1}' });
    expect(r2.status).toBe(401);
    expect(await h.ctx.bus.head('a')).toBe(`${E}-0`);
  });

  it('does not accept a subscriber token as the publisher key', async () => {
    const h = await start();
    const t = await h.ctx.token(['a']);
    expect((await h.publish({ channel: 'a', data: 1 }, { authorization: `Bearer ${t}` })).status).toBe(401);
  });

  it.each([
    ['invalid JSON', '{"channel":', 'bad_json'],
    ['a bad channel', { channel: 'a b', data: 1 }, 'bad_event'],
    ['no data', { channel: 'a' }, 'bad_event'],
    ['a JSON array', [1], 'bad_event'],
    ['an empty batch', { events: [] }, 'bad_event'],
    ['one bad event in a batch', { events: [{ channel: 'a', data: 1 }, { channel: '', data: 1 }] }, 'bad_event'],
  ])('answers 400 for %s and publishes nothing', async (_n, body, code) => {
    const h = await start();
    const r = await h.publish(body);
    expect(r.status).toBe(400);
    expect(r.json().error).toBe(code);
    expect(await h.ctx.bus.head('a')).toBe(`${E}-0`);
  });

  it('answers 400, not 500, for data nested too deeply to serialize', async () => {
    const h = await start();
    const deep = '['.repeat(10_000) + ']'.repeat(10_000);
    const r = await h.publish(`{"channel":"a","data":${deep}}`);
    expect(r.status).toBe(400);
    expect(r.json()).toMatchObject({ error: 'bad_event', message: 'data nests deeper than 100 levels' });
  });

  it('accepts data of exactly maxMessageBytes and answers 413 one byte past it', async () => {
    const h = await start({ config: { maxMessageBytes: 100 } });
    // JSON string data: 98 characters + 2 quotes = 100 bytes.
    expect((await h.publish({ channel: 'a', data: 'x'.repeat(98) })).status).toBe(200);
    const r = await h.publish({ channel: 'a', data: 'x'.repeat(99) });
    expect(r.status).toBe(413);
    expect(r.json().error).toBe('too_large');
    expect(await h.ctx.bus.head('a')).toBe(`${E}-1`);
  });

  it('counts data bytes in UTF-8, not characters', async () => {
    const h = await start({ config: { maxMessageBytes: 10 } });
    expect((await h.publish({ channel: 'a', data: 'éééé' })).status).toBe(200); // 8 + 2 = 10 bytes
    expect((await h.publish({ channel: 'a', data: 'ééééé' })).status).toBe(413);
  });

  it('accepts a batch of exactly maxBatch events and answers 413 past it', async () => {
    const h = await start({ config: { maxBatch: 3 } });
    const ev = (n: number) => ({ events: Array.from({ length: n }, (_, i) => ({ channel: 'a', data: i })) });
    expect((await h.publish(ev(3))).status).toBe(200);
    const r = await h.publish(ev(4));
    expect(r.status).toBe(413);
    expect(await h.ctx.bus.head('a')).toBe(`${E}-3`);
  });

  it('answers 413 for a body over its cap, at and past the limit', async () => {
    const cfg = { maxBatch: 1, maxMessageBytes: 100 };
    const h = await start({ config: cfg });
    const cap = publishBodyLimit(cfg);
    const wrap = (len: number) => {
      const head = '{"channel":"a","data":1}';
      return head + ' '.repeat(len - head.length); // JSON allows trailing whitespace
    };
    expect((await h.publish(wrap(cap))).status).toBe(200);
    const r = await h.publish(wrap(cap + 1));
    expect(r.status).toBe(413);
    expect(r.headers.connection).toBe('close');
  });

  it('answers 413 when the body goes past the cap without a Content-Length (chunked)', async () => {
    const cfg = { maxBatch: 1, maxMessageBytes: 100 };
    const h = await start({ config: cfg });
    const r = await new Promise<number>((resolve, reject) => {
      const req = request({
        host: '127.0.0.1', port: h.port, method: 'POST', path: '/v1/publish', agent: false,
        headers: { authorization: `Bearer ${TEST_PUBLISHER_KEY}`, 'transfer-encoding': 'chunked' },
      }, (res) => { res.resume(); resolve(res.statusCode!); });
      req.on('error', reject);
      req.end('{"channel":"a","data":1}' + ' '.repeat(publishBodyLimit(cfg)));
    });
    expect(r).toBe(413);
  });

  it('forgets a publish whose client goes away mid-body, publishing nothing and logging no error', async () => {
    const h = await start();
    const errors: unknown[] = [];
    h.ctx.log.error = ((...args: unknown[]) => { errors.push(args); }) as typeof h.ctx.log.error;
    await new Promise<void>((resolve) => {
      const s = connect(h.port, '127.0.0.1', () => {
        s.write(`POST /v1/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TEST_PUBLISHER_KEY}\r\n`
          + 'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"channel":"a",', () => s.destroy());
      });
      s.on('close', () => resolve());
    });
    // The next request on a fresh connection is served normally.
    expect((await h.publish({ channel: 'b', data: 1 })).status).toBe(200);
    expect(await h.ctx.bus.head('a')).toBe(`${E}-0`);
    expect(errors).toEqual([]);
  });

  it('answers 415 for a body that is not JSON by Content-Type', async () => {
    const h = await start();
    expect((await h.publish({ channel: 'a', data: 1 }, { 'content-type': 'text/plain' })).status).toBe(415);
    expect((await h.publish({ channel: 'a', data: 1 }, { 'content-type': 'application/json; charset=utf-8' })).status).toBe(200);
  });

  it('answers 503 with Retry-After when the bus is unavailable', async () => {
    const bus = new MemoryBus({ epoch: E });
    bus.publish = async () => { throw new BusUnavailableError('redis down'); };
    const h = await start({ bus });
    const r = await h.publish({ channel: 'a', data: 1 });
    expect(r.status).toBe(503);
    expect(r.json().error).toBe('bus_unavailable');
    expect(r.headers['retry-after']).toBe('2');
  });

  it('answers 500 with a JSON error for any other bus failure, and keeps serving', async () => {
    const bus = new MemoryBus({ epoch: E });
    bus.publish = async () => { throw new Error('boom'); };
    const h = await start({ bus });
    const r = await h.publish({ channel: 'a', data: 1 });
    expect(r.status).toBe(500);
    expect(r.json()).toEqual({ error: 'internal', message: 'internal error' });
    expect((await h.send('GET', '/healthz')).status).toBe(200);
  });
});

describe('health, metrics and routing', () => {
  it('probes: normal all 200; draining livez 200, readyz and healthz 503 + Retry-After; bus down readyz 503, healthz 200', async () => {
    const h = await start();
    const probe = async (p: string) => {
      const r = await h.send('GET', p);
      return [r.status, r.text, r.headers['retry-after'] ?? null];
    };
    expect(await probe('/livez')).toEqual([200, 'ok\n', null]);
    expect(await probe('/readyz')).toEqual([200, 'ok\n', null]);
    expect(await probe('/healthz')).toEqual([200, 'ok\n', null]);
    h.ctx.bus.health = () => 'degraded';
    // A Redis blip must not fail liveness (or /healthz used as one): only readiness.
    expect(await probe('/livez')).toEqual([200, 'ok\n', null]);
    expect(await probe('/readyz')).toEqual([503, 'bus unreachable\n', null]);
    expect(await probe('/healthz')).toEqual([200, 'ok (bus unreachable)\n', null]);
    h.ctx.bus.health = () => 'ok';
    // A bus that is connected but does not answer (a frozen Redis).
    h.ctx.bus.ping = (ms) => new Promise((r) => setTimeout(() => r(false), ms));
    expect(await probe('/readyz')).toEqual([503, 'bus did not answer within 1000 ms\n', null]);
    h.ctx.bus.ping = async () => true;
    expect(await probe('/readyz')).toEqual([200, 'ok\n', null]);
    h.ctx.draining = true;
    expect(await probe('/livez')).toEqual([200, 'ok (draining)\n', null]);
    expect(await probe('/readyz')).toEqual([503, 'draining\n', '10']);
    expect(await probe('/healthz')).toEqual([503, 'draining\n', '10']);
  });

  it('readyz answers 503 while the event loop lags past TIDINGS_READY_MAX_LAG_MS', async () => {
    const h = await start({ config: { readyMaxLagMs: 100 } });
    h.ctx.metrics.eventLoopLagMs = () => 150;
    const r = await h.send('GET', '/readyz');
    expect([r.status, r.text]).toEqual([503, 'event loop lagging (p99 150 ms)\n']);
    h.ctx.metrics.eventLoopLagMs = () => 100;
    expect((await h.send('GET', '/readyz')).status).toBe(200);
  });

  it('while draining, a publish gets 503 draining with Retry-After and responses close the connection', async () => {
    const h = await start();
    h.ctx.draining = true;
    const r = await h.publish({ channel: 'a', data: 1 });
    expect([r.status, r.json().error, r.headers['retry-after'], r.headers.connection]).toEqual([503, 'draining', '10', 'close']);
    await expect(h.ctx.bus.head('a')).resolves.toBe(`${E}-0`);
  });

  it('answers HEAD /healthz with the status and no body', async () => {
    const h = await start();
    const r = await h.send('HEAD', '/healthz');
    expect([r.status, r.text, r.headers['content-length']]).toEqual([200, '', '3']);
  });

  it('serves every metric name in Prometheus text format', async () => {
    const h = await start();
    const r = await h.send('GET', '/metrics');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toContain('text/plain');
    for (const name of [
      'tidings_ws_connections', 'tidings_handshakes_total', 'tidings_handshake_rejections_total', 'tidings_messages_out_total',
      'tidings_bytes_out_total', 'tidings_slow_consumer_closes_total', 'tidings_poll_responses_total', 'tidings_held_polls',
      'tidings_publishes_total', 'tidings_publish_duration_seconds', 'tidings_ws_closes_total', 'tidings_bus_errors_total',
      // prom-client's default metrics (instead of hand-made heap and loop-lag gauges), and the build.
      'process_cpu_user_seconds_total', 'process_resident_memory_bytes', 'nodejs_heap_size_used_bytes',
      'nodejs_eventloop_lag_p99_seconds', 'nodejs_gc_duration_seconds', 'tidings_build_info',
    ]) expect(r.text).toContain(`# TYPE ${name} `);
    expect(r.text).toMatch(new RegExp(`^tidings_build_info\\{version="[^"]+",node="${process.versions.node}"\\} 1$`, 'm'));
    expect(r.text).not.toContain('tidings_heap_used_bytes');
  });

  it('answers 404 JSON for an unknown path and 405 with Allow for a wrong method', async () => {
    const h = await start();
    const nf = await h.send('GET', '/nope');
    expect(nf.status).toBe(404);
    expect(nf.json().error).toBe('not_found');
    const na = await h.send('DELETE', '/v1/publish');
    expect(na.status).toBe(405);
    expect(na.headers.allow).toBe('POST, OPTIONS');
  });

  it('routes a path the URL parser normalizes, and reads its query', async () => {
    const h = await start();
    const t = await h.ctx.token(['a']);
    const r = await h.send('GET', '/v1/./poll?channels=a', { headers: { authorization: `Bearer ${t}` } });
    expect([r.status, r.headers.etag]).toEqual([200, `"a=${E}-0"`]);
  });

  it('answers a plain GET /v1/ws with 426 and Upgrade: websocket', async () => {
    const h = await start();
    const r = await h.send('GET', '/v1/ws');
    expect(r.status).toBe(426);
    expect(r.headers.upgrade).toBe('websocket');
  });

  it('answers POST and HEAD on /v1/ws with 405 and Allow: GET', async () => {
    const h = await start();
    for (const method of ['POST', 'HEAD']) {
      const r = await h.send(method, '/v1/ws');
      expect([method, r.status, r.headers.allow]).toEqual([method, 405, 'GET']);
    }
  });

  it('answers an upgrade on another path with 404 and closes the socket', async () => {
    const h = await start();
    const raw = await new Promise<string>((resolve, reject) => {
      const s = connect(h.port, '127.0.0.1', () => {
        s.write('GET /elsewhere HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n'
          + 'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
      });
      let got = '';
      s.on('data', (d) => { got += d.toString('latin1'); });
      s.on('end', () => resolve(got));
      s.on('error', reject);
    });
    expect(raw).toMatch(/^HTTP\/1\.1 404 Not Found\r\n/);
    expect(raw).not.toContain('101');
    expect(JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)).error).toBe('not_found');
  });

  it('serves a request whose Upgrade it does not take (h2c) as plain HTTP, then closes (runtimes without shouldUpgradeCallback)', async () => {
    const h = await start();
    const raw = await new Promise<string>((resolve, reject) => {
      const s = connect(h.port, '127.0.0.1', () => {
        s.write('POST /v1/publish HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n'
          + `Authorization: Bearer ${h.ctx.config.publisherKey}\r\nContent-Type: application/json\r\nContent-Length: 24\r\n\r\n{"channel":"a","data":1}`);
      });
      let got = '';
      s.on('data', (d) => { got += d.toString('latin1'); });
      s.on('end', () => resolve(got));
      s.on('error', reject);
    });
    expect(raw).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(raw).toMatch(/connection: close/i);
    expect(JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)).cursor).toBe(`${E}-1`);
  });
});
