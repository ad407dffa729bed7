/**
 * The second-generation API (issue 9): starting cursors, channels changed at
 * runtime, start() after a stop, ready(), on() returning its removal, the
 * `disconnect` diagnostics, `debug`, and the behaviour outside a page (SSR).
 */
import { describe, expect, it, vi } from 'vitest';
import { createClient, type Disconnect } from '../../src/index.js';
import { flush, manualClock, useFake, type Harness } from './helpers.js';

const { fake, client, nav, fire } = useFake();
const half = () => 0.5;
const transports = ['websocket', 'polling'] as const;
const live = (t: (typeof transports)[number]) => (t === 'websocket' ? 'open' : 'polling');
const data = (h: Harness, ch?: string) => h.events.filter((e) => !ch || e.channel === ch).map((e) => e.data);

describe.each(transports)('on %s', (t) => {
  it('starts from known cursors: what was published after them arrives, nothing before', async () => {
    fake.publish('a', 1);
    const from = fake.publish('a', 2);
    fake.publish('a', 3);
    fake.publish('b', 4);
    const h = client({ transport: t, random: half, channels: { a: from, b: null } });
    await h.tick();
    await h.tick(1000);
    fake.publish('b', 5);
    await h.tick(1000);
    expect(data(h)).toEqual([3, 5]);
  });

  it('subscribe() and unsubscribe() under a steady stream lose nothing on the other channel', async () => {
    const h = client({ transport: t, random: half, channels: ['a', 'b'] });
    await h.tick();
    const sent: number[] = [];
    let n = 0;
    const stream = async (k: number) => {
      for (let i = 0; i < k; i++) {
        sent.push(++n);
        fake.publish('a', n);
        await h.tick(100);
      }
    };
    await stream(5);
    h.c.subscribe('c');
    await stream(5);
    fake.publish('c', 'c1');
    await stream(5);
    h.c.unsubscribe('b');
    fake.publish('b', 'gone');
    await stream(5);
    for (let i = 0; i < 5; i++) await h.tick(1000);
    expect(data(h, 'a')).toEqual(sent);
    expect(data(h, 'c')).toEqual(['c1']);
    expect(data(h, 'b')).toEqual([]);
    expect(h.c.channels()).toEqual(['a', 'c']);
    expect(Object.keys(h.c.cursors()).sort()).toEqual(['a', 'c']);
    expect(h.c.state).toBe(live(t));
    expect(h.errors).toEqual([]);
  });

  it('subscribe(channel, cursor) replays that channel from the cursor', async () => {
    const from = fake.publish('c', 'old');
    fake.publish('c', 'missed');
    const h = client({ transport: t, random: half, channels: ['a'] });
    await h.tick();
    h.c.subscribe('c', from);
    await h.tick(1000);
    await h.tick(1000);
    expect(data(h, 'c')).toEqual(['missed']);
  });

  it('start() after close() resumes from the cursors held: nothing published meanwhile is lost', async () => {
    const h = client({ transport: t, random: half });
    await h.tick();
    await h.tick(1000);
    fake.publish('a', 1);
    await h.tick(1000);
    h.c.close();
    fake.publish('a', 2);
    h.c.start();
    await h.tick();
    await h.tick(1000);
    expect(data(h)).toEqual([1, 2]);
    expect(h.c.state).toBe(live(t));
  });

  it('ready() resolves once events flow', async () => {
    const h = client({ transport: t, random: half });
    let ok = false;
    void h.c.ready().then(() => (ok = true));
    expect(ok).toBe(false);
    await h.tick();
    expect(ok).toBe(true);
    await expect(h.c.ready()).resolves.toBeUndefined();
  });
});

describe('stops and starts', () => {
  it('a fatal token rejection (re-login) can be restarted with start(), keeping cursors', async () => {
    let tok = 'old';
    fake.knobs.accept = (x) => x === 'new';
    const h = client({ random: half, token: () => tok });
    const r = h.c.ready().catch((e: unknown) => e);
    await h.tick(1000);
    expect(h.c.state).toBe('stopped');
    expect(await r).toMatchObject({ code: 'TOKEN_REJECTED' });
    tok = 'new';
    h.c.start();
    await h.tick();
    expect(h.c.state).toBe('open');
  });

  it('ready() rejects with CLOSED when the client is closed first', async () => {
    const h = client({ random: half });
    const r = h.c.ready();
    h.c.close();
    await expect(r).rejects.toMatchObject({ code: 'CLOSED' });
    await expect(h.c.ready()).rejects.toMatchObject({ code: 'CLOSED' });
  });

  it('unsubscribing the last channel stops the client; subscribe() starts it again', async () => {
    const h = client({ random: half, channels: ['a'] });
    await h.tick();
    h.c.unsubscribe('a');
    await h.tick();
    expect(h.c.state).toBe('stopped');
    expect(fake.subscribers()).toBe(0);
    h.c.subscribe('b');
    await h.tick();
    expect(h.c.state).toBe('open');
    expect(fake.log.hellos.at(-1)!.channels).toEqual({ b: null });
  });

  it('subscribe() refuses a bad channel name or cursor with BAD_OPTIONS', () => {
    const h = client({ random: half });
    expect(() => h.c.subscribe('bad name')).toThrow(/BAD_OPTIONS/);
    expect(() => h.c.subscribe('c', 'bad cursor!')).toThrow(/BAD_OPTIONS/);
  });
});

describe('close() while offline', () => {
  it.each(transports)('on %s: nothing waits for online any more, and no token or request is asked for', async (t) => {
    nav.onLine = false;
    let tokens = 0;
    const h = client({ transport: t, random: half, token: () => (tokens++, 'tok') });
    await h.tick(5000);
    h.c.close();
    await h.tick(60_000);
    nav.onLine = true;
    fire('online');
    await h.tick(60_000);
    expect(tokens).toBe(0);
    expect(fake.log.connections + fake.log.polls.length).toBe(0);
    expect(h.c.state).toBe('stopped');
  });
});

describe('listeners and diagnostics', () => {
  it('on() returns a function that removes the handler', async () => {
    const h = client({ random: half });
    const got: unknown[] = [];
    const off = h.c.on('event', (e) => got.push(e.data));
    await h.tick();
    fake.publish('a', 1);
    await h.tick();
    off();
    fake.publish('a', 2);
    await h.tick();
    expect(got).toEqual([1]);
  });

  it('disconnect says why the connection ended and when the next attempt is due', async () => {
    const h = client({ random: half });
    const seen: Disconnect[] = [];
    h.c.on('disconnect', (d) => seen.push(d));
    await h.tick();
    fake.closeAll(1011, 'boom');
    await h.tick();
    expect(seen).toEqual([{ transport: 'websocket', code: 1011, reason: 'boom', retryIn: 500 }]);
  });

  it('debug gets every policy input and its effects; off by default', async () => {
    const log = vi.fn();
    const h = client({ random: half, debug: log });
    await h.tick();
    expect(log).toHaveBeenCalledWith('tidings', { t: 'welcome' }, [{ e: 'emit', ev: { type: 'state', state: 'open', transport: 'websocket' } }]);
    const quiet = vi.spyOn(console, 'debug');
    client({ random: half });
    await h.tick();
    expect(quiet).not.toHaveBeenCalled();
  });

  it("accepts share (reserved for cross-tab sharing)", async () => {
    const h = client({ random: half, share: false });
    await h.tick();
    expect(h.c.state).toBe('open');
  });
});

describe('outside a page (server-side rendering)', () => {
  it('opens no connection until something listens', async () => {
    vi.stubGlobal('document', undefined);
    const clock = manualClock();
    const c = createClient({ url: fake.base, token: 't', channels: ['a'], clock, random: half });
    for (let i = 0; i < 10; i++) clock.advance(6000), await flush();
    expect(fake.log.connections + fake.log.polls.length).toBe(0);
    expect(c.state).toBe('stopped');
    const states: string[] = [];
    c.on('state', (s) => states.push(s));
    clock.advance(0);
    await flush();
    expect(c.state).toBe('open');
    expect(states).toEqual(['connecting', 'open']);
    c.close();
  });

  it('createClient without any listener, then close(): nothing ever opened', async () => {
    vi.stubGlobal('document', undefined);
    const c = createClient({ url: fake.base, token: 't', channels: ['a'] });
    c.close();
    await new Promise((r) => setTimeout(r, 20));
    expect(fake.log.connections).toBe(0);
  });
});
