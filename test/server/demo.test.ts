// The demo-only routes, over real HTTP on loopback, against the real in-memory bus.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { networkInterfaces } from 'node:os';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { jwtVerify } from 'jose';
import { DEFAULTS, type Config } from '../../server/config.js';
import type { ServerContext } from '../../server/context.js';
import { handleDemo } from '../../server/http/demo.js';
import { findRoot, ROOT } from '../../server/demo/assets.js';
import { Inboxes } from '../../server/demo/inbox.js';
import { isLoopback } from '../../server/demo/routes.js';
import { DEMO_LIMITS, parseDropCode, parseTtl, parseUser } from '../../server/demo/params.js';
import { MemoryBus } from '../../server/pubsub/memory-bus.js';

const SECRET = 'demo-test-secret-0123456789abcdef';

interface Harness {
  base: string;
  ctx: ServerContext;
  bus: MemoryBus;
  dropped: number[];
  server: Server;
}

function makeCtx(config: Partial<Config> = {}): { ctx: ServerContext; bus: MemoryBus; dropped: number[] } {
  const bus = new MemoryBus({ epoch: 'e1' });
  const dropped: number[] = [];
  const quiet = { info() {}, warn() {}, error() {}, debug() {} };
  const ctx = {
    config: { ...DEFAULTS, demo: true, subscriberSecret: SECRET, publisherKey: 'pk', ...config },
    bus,
    log: quiet,
    metrics: {},
    draining: false,
    control: {
      dropAll(code = 1011) {
        dropped.push(code);
        return 3;
      },
      blockUpgrades: false,
      frozen: false,
      connections: () => 7,
    },
    onLiveEvent: () => () => {},
  } as unknown as ServerContext;
  return { ctx, bus, dropped };
}

async function start(config: Partial<Config> = {}): Promise<Harness> {
  const { ctx, bus, dropped } = makeCtx(config);
  const server = createServer((req, res) => {
    if (handleDemo(req, res, ctx)) return;
    res.writeHead(418).end('not demo');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return { base: `http://127.0.0.1:${port}`, ctx, bus, dropped, server };
}

let h: Harness;
beforeEach(async () => {
  h = await start();
});
afterEach(async () => {
  await new Promise((r) => h.server.close(r));
});

const post = (path: string) => fetch(h.base + path, { method: 'POST' });

describe('demo routes', () => {
  it('leaves every route alone when demo mode is off', async () => {
    const off = await start({ demo: false });
    try {
      for (const path of ['/', '/demo/token?user=alice', '/tidings.min.js']) {
        const r = await fetch(off.base + path);
        expect(r.status, path).toBe(418);
      }
    } finally {
      await new Promise((r) => off.server.close(r));
    }
  });

  it('passes paths that are not demo routes to the router', async () => {
    const r = await fetch(h.base + '/v1/poll?channels=a');
    expect(r.status).toBe(418);
  });

  it('serves the demo page at / as HTML that loads the SDK by script tag', async () => {
    const r = await fetch(h.base + '/');
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const html = await r.text();
    expect(html).toContain('<script src="/tidings.min.js"></script>');
    expect(html).toContain("from '/demo/app.js'");
  });

  it('serves the page script and stylesheet with their types', async () => {
    const js = await fetch(h.base + '/demo/app.js');
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(await js.text()).toContain('export function startInbox');
    const css = await fetch(h.base + '/demo/app.css');
    expect(css.headers.get('content-type')).toBe('text/css; charset=utf-8');
  });

  it('answers HEAD on the page without a body', async () => {
    const r = await fetch(h.base + '/', { method: 'HEAD' });
    expect(r.status).toBe(200);
    expect(Number(r.headers.get('content-length'))).toBeGreaterThan(100);
    expect(await r.text()).toBe('');
  });

  it('rejects POST on the page with 405', async () => {
    const r = await post('/');
    expect(r.status).toBe(405);
    expect(await r.json()).toMatchObject({ error: 'method_not_allowed' });
  });

  it('answers 404 "run npm run build" or the file for the built SDK', async () => {
    for (const path of ['/tidings.min.js', '/tidings.min.js.map', '/tidings.mjs']) {
      const r = await fetch(h.base + path);
      if (r.status === 200) {
        expect(r.headers.get('access-control-allow-origin')).toBe('*');
      } else {
        expect(r.status, path).toBe(404);
        const body = (await r.json()) as { error: string; message: string };
        expect(body.error).toBe('not_built');
        expect(body.message).toContain('run npm run build');
      }
    }
  });

  it('answers unknown /demo/ paths with a JSON 404', async () => {
    const r = await fetch(h.base + '/demo/nope');
    expect(r.status).toBe(404);
    expect(await r.json()).toMatchObject({ error: 'not_found' });
  });

  it('ignores the query and never serves a file named by the request', async () => {
    const r = await fetch(h.base + '/demo/..%2f..%2fpackage.json');
    expect(r.status).toBe(404);
  });

  it('does not read a target starting with // as an authority', async () => {
    const r = await fetch(h.base + '//demo/token?user=a');
    expect(r.status).toBe(418);
  });

  it('answers a CORS preflight for the ESM page on another origin', async () => {
    const r = await fetch(h.base + '/demo/send?user=a', { method: 'OPTIONS' });
    expect(r.status).toBe(204);
    expect(r.headers.get('access-control-allow-origin')).toBe('*');
    expect(r.headers.get('access-control-allow-methods')).toContain('POST');
  });
});

describe('POST /demo/send', () => {
  it("publishes a mail to the user's own channel and returns its cursor", async () => {
    const r = await post('/demo/send?user=alice&subject=Hello');
    expect(r.status).toBe(200);
    const body = (await r.json()) as { channel: string; cursor: string };
    expect(body.channel).toBe('demo:alice');
    const replay = await h.bus.readAfter('demo:alice', 'e1-0');
    expect(replay.kind).toBe('events');
    if (replay.kind !== 'events') return;
    expect(replay.events).toHaveLength(1);
    expect(replay.events[0]!.cursor).toBe(body.cursor);
    const data = JSON.parse(replay.events[0]!.json) as Record<string, unknown>;
    expect(data).toMatchObject({ from: 'demo@tidings', subject: 'Hello' });
    expect(typeof data['at']).toBe('number');
  });

  it('numbers default subjects', async () => {
    await post('/demo/send?user=alice');
    await post('/demo/send?user=alice');
    const replay = await h.bus.readAfter('demo:alice', 'e1-0');
    if (replay.kind !== 'events') throw new Error('expected events');
    expect(replay.events.map((e) => (JSON.parse(e.json) as { subject: string }).subject)).toEqual(['Test mail #1', 'Test mail #2']);
  });

  it('refuses GET with 405 and an Allow header', async () => {
    const r = await fetch(h.base + '/demo/send?user=alice');
    expect(r.status).toBe(405);
    expect(r.headers.get('allow')).toBe('POST');
  });

  it('accepts a subject at the limit and refuses one past it', async () => {
    const at = 'x'.repeat(DEMO_LIMITS.maxSubject);
    expect((await post(`/demo/send?user=a&subject=${at}`)).status).toBe(200);
    const past = await post(`/demo/send?user=a&subject=${at}x`);
    expect(past.status).toBe(400);
    expect(await past.json()).toMatchObject({ error: 'bad_subject' });
  });

  it('answers 503 publish_failed when the bus refuses', async () => {
    await h.bus.close();
    const r = await post('/demo/send?user=alice');
    expect(r.status).toBe(503);
    expect(await r.json()).toMatchObject({ error: 'publish_failed' });
  });
});

describe('GET /demo/inbox', () => {
  it('lists mails published after the mailbox was opened, oldest first', async () => {
    expect(await (await fetch(h.base + '/demo/inbox?user=bob')).json()).toEqual({ channel: 'demo:bob', mails: [] });
    await post('/demo/send?user=bob&subject=one');
    await h.bus.publish([{ channel: 'demo:bob', json: '{"subject":"two"}' }]);
    const body = (await (await fetch(h.base + '/demo/inbox?user=bob')).json()) as { mails: { cursor: string; data: { subject: string } }[] };
    expect(body.mails.map((m) => m.data.subject)).toEqual(['one', 'two']);
    expect(body.mails.map((m) => m.cursor)).toEqual(['e1-1', 'e1-2']);
  });

  it('does not list mails of other users', async () => {
    await fetch(h.base + '/demo/inbox?user=bob');
    await post('/demo/send?user=carol');
    const body = (await (await fetch(h.base + '/demo/inbox?user=bob')).json()) as { mails: unknown[] };
    expect(body.mails).toEqual([]);
  });

  it('refuses a bad user with 400 bad_user', async () => {
    for (const q of ['', '?user=', '?user=a%20b', '?user=' + 'u'.repeat(33), '?user=%C3%A9']) {
      const r = await fetch(h.base + '/demo/inbox' + q);
      expect(r.status, q).toBe(400);
      expect(await r.json(), q).toMatchObject({ error: 'bad_user', message: expect.any(String) });
    }
  });
});

describe('POST /demo/simulate', () => {
  it('drops every connection with 1011 by default and reports the count', async () => {
    const r = await post('/demo/simulate?action=drop');
    expect(await r.json()).toMatchObject({ action: 'drop', dropped: 3, connections: 7 });
    expect(h.dropped).toEqual([1011]);
  });

  it('drops with a chosen close code, or 0 for an abrupt reset', async () => {
    await post('/demo/simulate?action=drop&code=1012');
    await post('/demo/simulate?action=drop&code=0');
    expect(h.dropped).toEqual([1012, 0]);
  });

  it('refuses close codes a server may not send', async () => {
    for (const code of ['1005', '1006', '999', '2000', '5000', 'x']) {
      const r = await post(`/demo/simulate?action=drop&code=${code}`);
      expect(r.status, code).toBe(400);
    }
    expect(h.dropped).toEqual([]);
  });

  it('blocks and unblocks WebSocket upgrades', async () => {
    expect(await (await post('/demo/simulate?action=block-ws')).json()).toMatchObject({ blockUpgrades: true });
    expect(h.ctx.control.blockUpgrades).toBe(true);
    await post('/demo/simulate?action=unblock-ws');
    expect(h.ctx.control.blockUpgrades).toBe(false);
  });

  it('freezes and unfreezes connections; unfreezing ends the frozen ones abruptly (they swallowed frames)', async () => {
    await post('/demo/simulate?action=freeze');
    expect(h.ctx.control.frozen).toBe(true);
    expect(h.dropped).toEqual([]);
    const r = await post('/demo/simulate?action=unfreeze');
    expect(h.ctx.control.frozen).toBe(false);
    // (They stayed open: a client that had not noticed the silence went on after a gap.)
    expect(h.dropped).toEqual([0]);
    expect(await r.json()).toMatchObject({ action: 'unfreeze', dropped: 3 });
    // Nothing frozen, nothing to end.
    await post('/demo/simulate?action=unfreeze');
    expect(h.dropped).toEqual([0]);
  });

  it('refuses an unknown action with 400 bad_action', async () => {
    const r = await post('/demo/simulate?action=explode');
    expect(r.status).toBe(400);
    expect(await r.json()).toMatchObject({ error: 'bad_action' });
  });
});

describe('GET /demo/token', () => {
  it('mints an HS256 token for the user’s channel only, with the asked ttl', async () => {
    const before = Math.floor(Date.now() / 1000);
    const r = await fetch(h.base + '/demo/token?user=alice&ttl=3');
    expect(r.status).toBe(200);
    const body = (await r.json()) as { token: string; channel: string; user: string };
    expect(body).toMatchObject({ channel: 'demo:alice', user: 'alice' });
    const { payload, protectedHeader } = await jwtVerify(body.token, new TextEncoder().encode(SECRET));
    expect(protectedHeader.alg).toBe('HS256');
    expect(payload.sub).toBe('alice');
    expect(payload['ch']).toEqual(['demo:alice']);
    expect(payload.exp! - before).toBeGreaterThanOrEqual(2);
    expect(payload.exp! - before).toBeLessThanOrEqual(4);
  });

  it('grants the channels asked for (the SDK passes its union when tabs share), within the user’s own namespace', async () => {
    const r = await fetch(h.base + '/demo/token?user=alice&channels=' + encodeURIComponent('demo:alice,demo:alice:team,demo:news'));
    expect(r.status).toBe(200);
    const body = (await r.json()) as { token: string; channels: string[] };
    const { payload } = await jwtVerify(body.token, new TextEncoder().encode(SECRET));
    expect(payload['ch']).toEqual(['demo:alice', 'demo:alice:team', 'demo:news']);
    expect(body.channels).toEqual(payload['ch']);
    for (const bad of ['demo:bob', 'demo:alicex', 'demo:alice:b@d', 'x']) {
      const r = await fetch(h.base + '/demo/token?user=alice&channels=' + encodeURIComponent(bad));
      expect(r.status, bad).toBe(400);
      expect(await r.json(), bad).toMatchObject({ error: 'bad_channels' });
    }
  });

  it('grants as many channels as a hello may carry (TIDINGS_MAX_CHANNELS), at and past the limit: a tab group\'s union fits', async () => {
    const list = (n: number) => encodeURIComponent(Array.from({ length: n }, (_, i) => `demo:alice:${i}`).join(','));
    // (The demo once capped a token at 8 channels: four tabs of three channels each never connected.)
    expect((await fetch(h.base + '/demo/token?user=alice&channels=' + list(64))).status).toBe(200);
    const past = await fetch(h.base + '/demo/token?user=alice&channels=' + list(65));
    expect(past.status).toBe(400);
    expect(await past.json()).toMatchObject({ error: 'bad_channels', message: expect.stringContaining('at most 64') });
    const small = await start({ maxChannels: 3 });
    try {
      expect((await fetch(small.base + '/demo/token?user=alice&channels=' + list(3))).status).toBe(200);
      expect((await fetch(small.base + '/demo/token?user=alice&channels=' + list(4))).status).toBe(400);
    } finally {
      await new Promise((r) => small.server.close(r));
    }
  });

  it('never puts the secret in the answer', async () => {
    const text = await (await fetch(h.base + '/demo/token?user=alice')).text();
    expect(text).not.toContain(SECRET);
  });

  it('accepts ttl at both bounds and refuses past them', async () => {
    expect((await fetch(h.base + '/demo/token?user=a&ttl=1')).status).toBe(200);
    expect((await fetch(h.base + '/demo/token?user=a&ttl=86400')).status).toBe(200);
    for (const ttl of ['0', '86401', '-1', '1.5', 'abc', '']) {
      const r = await fetch(h.base + `/demo/token?user=a&ttl=${ttl}`);
      expect(r.status, ttl).toBe(400);
      expect(await r.json(), ttl).toMatchObject({ error: 'bad_ttl' });
    }
  });

  it('opens the mailbox, so mail sent after the token is listed', async () => {
    await post('/demo/send?user=dave&subject=before');
    await fetch(h.base + '/demo/token?user=dave');
    await post('/demo/send?user=dave&subject=after');
    const body = (await (await fetch(h.base + '/demo/inbox?user=dave')).json()) as { mails: { data: { subject: string } }[] };
    expect(body.mails.map((m) => m.data.subject)).toEqual(['after']);
  });
});

describe('params', () => {
  const q = (s: string) => new URLSearchParams(s);
  it('accepts a user of 32 characters and refuses 33', () => {
    expect(parseUser(q('user=' + 'a'.repeat(32)))).toBe('a'.repeat(32));
    expect(() => parseUser(q('user=' + 'a'.repeat(33)))).toThrow(/1 to 32/);
  });
  it('defaults ttl to an hour', () => {
    expect(parseTtl(q(''))).toBe(3600);
  });
  it('accepts close codes at the edges of the allowed ranges', () => {
    for (const c of [0, 1000, 1003, 1007, 1014, 3000, 4999]) expect(parseDropCode(q(`code=${c}`))).toBe(c);
    for (const c of [1004, 1015, 2999]) expect(() => parseDropCode(q(`code=${c}`))).toThrow();
  });
});

describe('Inboxes', () => {
  it('lists at most maxListed mails, the most recent', async () => {
    const bus = new MemoryBus({ epoch: 'e2' });
    const inboxes = new Inboxes(bus, { maxInboxes: 10, maxListed: 2 });
    await inboxes.open('demo:x');
    await bus.publish([1, 2, 3].map((n) => ({ channel: 'demo:x', json: String(n) })));
    expect((await inboxes.list('demo:x')).map((m) => m.data)).toEqual([2, 3]);
  });

  it('remembers maxInboxes mailboxes and forgets the oldest past it', async () => {
    const bus = new MemoryBus({ epoch: 'e3' });
    const inboxes = new Inboxes(bus, { maxInboxes: 2, maxListed: 10 });
    await inboxes.open('demo:a');
    await inboxes.open('demo:b');
    expect(inboxes.size).toBe(2);
    await bus.publish([{ channel: 'demo:a', json: '"kept"' }]);
    expect((await inboxes.list('demo:a')).map((m) => m.data)).toEqual(['kept']);
    await inboxes.open('demo:c'); // past the limit: demo:a (oldest) is forgotten
    expect(inboxes.size).toBe(2);
    expect(await inboxes.list('demo:a')).toEqual([]); // reopened at the current head
  });

  it('restarts an empty listing when the history no longer covers its start', async () => {
    const bus = new MemoryBus({ epoch: 'e4', history: 2 });
    const inboxes = new Inboxes(bus, { maxInboxes: 10, maxListed: 10 });
    await inboxes.open('demo:y');
    await bus.publish([1, 2, 3].map((n) => ({ channel: 'demo:y', json: String(n) })));
    expect(await inboxes.list('demo:y')).toEqual([]);
    await bus.publish([{ channel: 'demo:y', json: '4' }]);
    expect((await inboxes.list('demo:y')).map((m) => m.data)).toEqual([4]);
  });
});

describe('assets', () => {
  it('finds the repo root from this module and from a dist-like depth', () => {
    expect(findRoot(ROOT + '/server/demo')).toBe(ROOT);
    expect(findRoot(ROOT + '/dist/server/demo')).toBe(ROOT);
  });
});

describe('demo controls are loopback-only (issue 11, defect 6)', () => {
  const external = Object.values(networkInterfaces()).flat().find((a) => a && a.family === 'IPv4' && !a.internal)?.address;

  it('isLoopback: 127/8, ::1 and IPv4-mapped loopback only', () => {
    for (const a of ['127.0.0.1', '127.0.0.2', '::1', '::ffff:127.0.0.1']) expect(isLoopback(a), a).toBe(true);
    for (const a of ['192.0.2.2', '::ffff:10.0.0.1', 'fd00::2', '::', undefined]) expect(isLoopback(a), String(a)).toBe(false);
  });

  it.skipIf(external === undefined)('refuses /demo/* from another address (403) unless the publisher key is sent; the page stays public', async () => {
    const { ctx, dropped } = makeCtx();
    const server = createServer((req, res) => {
      if (handleDemo(req, res, ctx)) return;
      res.writeHead(418).end('not demo');
    });
    await new Promise<void>((r) => server.listen(0, '0.0.0.0', r));
    const base = `http://${external}:${(server.address() as AddressInfo).port}`;
    try {
      const drop = await fetch(`${base}/demo/simulate?action=drop`, { method: 'POST' });
      expect(drop.status).toBe(403);
      expect((await drop.json()).message).toContain('loopback clients only');
      expect(dropped).toEqual([]);
      expect((await fetch(`${base}/demo/token?user=alice`)).status).toBe(403);
      const withKey = await fetch(`${base}/demo/token?user=alice`, { headers: { authorization: 'Bearer pk' } });
      expect(withKey.status).toBe(200);
      expect((await fetch(`${base}/`)).status).toBe(200);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});
