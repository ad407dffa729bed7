/**
 * The sharing edge (src/share/index.ts) through the public API: Node 24's real
 * Web Locks and BroadcastChannel, a stubbed `document`/`window` (so the SDK
 * takes this process for a browser tab), the msw fake server, real timers.
 * Several clients of one user in one process form a group, like tabs.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createClient, type Client, type ClientOptions, type EventMessage } from '../../src/index.js';
import { useFake } from './helpers.js';

const { fake, doc, fire } = useFake();
// Node 24's own, captured before the helpers stub `navigator`.
const locks = (globalThis as { navigator: Navigator }).navigator.locks;
/** A token whose payload names the user and the channels: the SDK groups by `sub` and checks `ch` (it never verifies). */
const jwt = (sub: string, ch: string[]) => 'h.' + Buffer.from(JSON.stringify({ sub, ch })).toString('base64url') + '.s';

let clients: Client[] = [];
let n = 0;
beforeEach(() => {
  vi.stubGlobal('navigator', { onLine: true, locks });
  vi.stubGlobal('window', new EventTarget());
});
afterEach(() => {
  clients.forEach((c) => c.close());
  clients = [];
});

function tab(user: string, channels = ['a']) {
  const c = createClient({ url: fake.base, token: jwt(user, ['a', 'b']), channels, pingGrace: 2000 });
  const got: EventMessage[] = [];
  c.on('event', (e) => got.push(e));
  clients.push(c);
  return { c, got };
}

/** A leading tab on channel `a`, then a client of the same user on `b` whose token function answers after 50 ms. */
async function besideLeaderWithSlowToken(): Promise<Client> {
  const user = 'u' + ++n;
  await tab(user).c.ready();
  const slow = async () => (await new Promise((r) => setTimeout(r, 50)), jwt(user, ['a', 'b']));
  const b = createClient({ url: fake.base, token: slow, channels: ['b'], pingGrace: 2000 });
  clients.push(b);
  return b;
}

/** Two tabs of a new user polling plainly once a second, both ready: the first leads. */
async function pollingPair() {
  fake.knobs.pollInterval = 1;
  const user = 'u' + ++n;
  const opts: ClientOptions = { url: fake.base, token: jwt(user, ['a']), channels: ['a'], transport: 'polling', longPoll: 0, pingGrace: 2000 };
  const a = createClient(opts);
  const b = createClient(opts);
  clients.push(a, b);
  await Promise.all([a.ready(), b.ready()]);
  return { opts, a, b };
}

describe('sharing, through the public API', () => {
  it('ready() right after createClient waits for the shared connection (it rejected CLOSED before)', async () => {
    const { c } = tab('u' + ++n);
    expect(c.state).toBe('connecting');
    await expect(c.ready()).resolves.toBeUndefined();
    expect(c.state).toBe('open');
  });

  it('two clients of one user share one connection; closing the leader hands over and loses nothing', async () => {
    const user = 'u' + ++n;
    const a = tab(user);
    await a.c.ready();
    const b = tab(user, ['a', 'b']);
    await b.c.ready();
    // One open connection (b's channel made the leader say hello again on a new one).
    await vi.waitFor(() => expect(fake.subscribers()).toBe(1));
    expect([a.c.leader, b.c.leader]).toEqual([true, false]);
    fake.publish('a', 1);
    fake.publish('b', 2);
    await vi.waitFor(() => expect(b.got.map((e) => e.data)).toEqual([1, 2]));
    expect(a.got.map((e) => e.data)).toEqual([1]);
    // One of the two copies of event 1 is `first` (the desktop notification is shown once).
    expect([...a.got, ...b.got].filter((e) => e.channel === 'a' && e.first)).toHaveLength(1);

    a.c.close();
    fake.publish('a', 3);
    await vi.waitFor(() => expect(b.c.leader).toBe(true), { timeout: 5000 });
    fake.publish('a', 4);
    await vi.waitFor(() => expect(b.got.map((e) => e.data)).toEqual([1, 2, 3, 4]), { timeout: 5000 });
    expect(fake.subscribers()).toBe(1);
  });

  it('a shared poller does not slow down for its own page being hidden: another tab may be the one looked at', async () => {
    const { a, b } = await pollingPair();
    expect([a.leader, b.leader]).toEqual([true, false]);
    // The leader's page goes to the background (here every tab's: they share one stubbed document).
    doc.visibilityState = 'hidden';
    await new Promise((r) => setTimeout(r, 1200));
    const polls = fake.log.polls.length;
    // One plain poll a second, as X-Poll-Interval says (a page of its own, hidden, would wait 4 s).
    await new Promise((r) => setTimeout(r, 3500));
    expect(fake.log.polls.length - polls).toBeGreaterThanOrEqual(3);
    expect(b.state).toBe('polling');
  });

  it('polling, after a takeover: a new tab on a quiet channel the group carries opens (it waited for an event, which it then missed)', async () => {
    const { opts, a, b } = await pollingPair();
    const seen: unknown[] = [];
    b.on('event', (e) => seen.push(e.data));
    fake.publish('a', 1);
    await vi.waitFor(() => expect(seen).toEqual([1]), { timeout: 5000 });
    a.close();
    await vi.waitFor(() => expect(b.leader).toBe(true), { timeout: 5000 });
    // The new leader's polls are answered 304: nothing new.
    const c = createClient(opts);
    clients.push(c);
    const got: unknown[] = [];
    c.on('event', (e) => got.push(e.data));
    await c.ready();
    fake.publish('a', 2);
    await vi.waitFor(() => expect(got).toEqual([2]), { timeout: 5000 });
  });

  it('a tab that starts while offline waits for `online` (as a client of its own does), then joins at once: no token call, no error meanwhile', async () => {
    const user = 'u' + ++n;
    await tab(user).c.ready();
    let calls = 0;
    const token = async () => (calls++, jwt(user, ['a', 'b']));
    vi.stubGlobal('navigator', { onLine: false, locks });
    const b = createClient({ url: fake.base, token, channels: ['b'], pingGrace: 2000 });
    clients.push(b);
    const errors: string[] = [];
    const states: string[] = [];
    b.on('error', (e) => errors.push(e.message));
    b.on('state', (x) => states.push(x));
    await new Promise((r) => setTimeout(r, 300));
    // (It asked for tokens, failing: `connecting`, errors, and it joined only when its backoff ran out.)
    expect(b.state).toBe('offline');
    expect([calls, errors]).toEqual([0, []]);
    vi.stubGlobal('navigator', { onLine: true, locks });
    fire('online');
    await b.ready();
    expect(states.slice(-3)).toEqual(['offline', 'connecting', 'open']);
    expect(b.leader).toBe(false);
    expect(errors).toEqual([]);
  });

  it('a tab closed while it waits offline for its check asks for no token once back online, and stays stopped', async () => {
    let calls = 0;
    vi.stubGlobal('navigator', { onLine: false, locks });
    const b = createClient({ url: fake.base, token: async () => (calls++, jwt('u' + ++n, ['b'])), channels: ['b'], pingGrace: 2000 });
    clients.push(b);
    await new Promise((r) => setTimeout(r, 50));
    b.close();
    vi.stubGlobal('navigator', { onLine: true, locks });
    fire('online');
    await new Promise((r) => setTimeout(r, 200));
    expect([calls, b.state, b.leader]).toEqual([0, 'stopped', false]);
  });

  it('start() after close() resumes from the cursors held, in a follower and in the leader, as a client of its own does', async () => {
    const user = 'u' + ++n;
    const a = tab(user);
    await a.c.ready();
    const b = tab(user);
    await b.c.ready();
    expect([a.c.leader, b.c.leader]).toEqual([true, false]);
    fake.publish('a', 1);
    await vi.waitFor(() => expect(b.got.map((e) => e.data)).toEqual([1]));
    const held = b.c.cursors();
    b.c.close();
    // (cursors() answered {} once closed, and start() went back to the cursors given at creation: here
    // "from now on", which lost event 2.)
    expect(b.c.cursors()).toEqual(held);
    // A channel added while stopped keeps the others' cursors, too.
    b.c.subscribe('b');
    expect(b.c.cursors()).toEqual(held);
    fake.publish('a', 2);
    b.c.start();
    await b.c.ready();
    fake.publish('a', 3);
    await vi.waitFor(() => expect(b.got.map((e) => e.data)).toEqual([1, 2, 3]));

    a.c.close();
    expect(a.c.cursors()).toEqual({ a: b.c.cursors()['a'] });
    fake.publish('a', 4);
    a.c.start();
    await a.c.ready();
    await vi.waitFor(() => expect(a.got.map((e) => e.data)).toEqual([1, 2, 3, 4]));
    await vi.waitFor(() => expect(b.got.map((e) => e.data)).toEqual([1, 2, 3, 4]));
  });

  it("a token function that refuses the union (too many channels for the app's backend): the other tabs' channels connect alone, none is stuck", async () => {
    const user = 'u' + ++n;
    // This backend mints tokens for one channel at a time only.
    const token = async ({ channels }: { channels: string[] }) => {
      if (channels.length > 1) throw new Error('too many channels');
      return jwt(user, channels);
    };
    const a = createClient({ url: fake.base, token, channels: ['a'], pingGrace: 2000 });
    const b = createClient({ url: fake.base, token, channels: ['b'], pingGrace: 2000 });
    clients.push(a, b);
    const got: Record<string, unknown[]> = { a: [], b: [] };
    a.on('event', (e) => got['a']!.push(e.data));
    b.on('event', (e) => got['b']!.push(e.data));
    await a.ready();
    // (The leader's engine once kept asking for a token for a and b, failing: both tabs stuck connecting.)
    await b.ready();
    await vi.waitFor(() => expect(a.state).toBe('open'));
    expect([a.leader, b.leader]).toEqual([true, true]);
    fake.publish('a', 1);
    fake.publish('b', 2);
    await vi.waitFor(() => expect(got).toEqual({ a: [1], b: [2] }));
    expect(fake.subscribers()).toBe(2);
  });

  it('tabs asking for different transports do not share (a `polling` tab behind an auto leader reported websocket)', async () => {
    const user = 'u' + ++n;
    const opts: ClientOptions = { url: fake.base, token: jwt(user, ['a']), channels: ['a'], pingGrace: 2000 };
    const a = createClient(opts);
    const b = createClient({ ...opts, transport: 'polling' });
    clients.push(a, b);
    await Promise.all([a.ready(), b.ready()]);
    expect([a.transport, b.transport]).toEqual(['websocket', 'polling']);
    expect([a.leader, b.leader]).toEqual([true, true]);
  });

  it("a tab's memory of a fallback is cleared when the group is on WebSocket: leading later, it does not start a working group on polling", async () => {
    const user = 'u' + ++n;
    const a = tab(user);
    await a.c.ready();
    // This tab's session remembers a fallback (it led one before a reload); the group has gone back to WebSocket since.
    sessionStorage.setItem('tidings:ws:' + fake.base, '1');
    const b = tab(user);
    await b.c.ready();
    expect([a.c.leader, b.c.leader]).toEqual([true, false]);
    a.c.close();
    await vi.waitFor(() => expect(b.c.leader).toBe(true), { timeout: 5000 });
    await b.c.ready();
    // (It started on polling, for the probe's delay.)
    expect(b.c.transport).toBe('websocket');
  });

  it('a client of another user does not share', async () => {
    const a = tab('u' + ++n);
    const b = tab('u' + ++n);
    await Promise.all([a.c.ready(), b.c.ready()]);
    expect(fake.subscribers()).toBe(2);
    expect([a.c.leader, b.c.leader]).toEqual([true, true]);
  });

  it('a client whose own token does not grant its channels connects alone', async () => {
    const user = 'u' + ++n;
    const a = tab(user);
    await a.c.ready();
    const c = createClient({ url: fake.base, token: jwt(user, ['a']), channels: ['a', 'c'], pingGrace: 2000 });
    clients.push(c);
    await c.ready();
    expect(c.leader).toBe(true);
    expect(fake.subscribers()).toBe(2);
  });

  it('stop and start again while the token is being fetched: the tab joins once, and its channels leave the union when it closes', async () => {
    const b = await besideLeaderWithSlowToken();
    // Both token checks (the first start's and the second's) resolve after the second start.
    b.close();
    b.start();
    await b.ready();
    expect(b.leader).toBe(false);
    await vi.waitFor(() => expect(Object.keys(fake.log.hellos.at(-1)!.channels).sort()).toEqual(['a', 'b']));
    b.close();
    // It held its tab lock twice before (once per join) and released one: the leader never heard it go.
    await vi.waitFor(() => expect(Object.keys(fake.log.hellos.at(-1)!.channels)).toEqual(['a']), { timeout: 3000 });
    expect(fake.subscribers()).toBe(1);
  });

  it('channel changes whose token checks finish out of order are applied in the order they were made', async () => {
    const user = 'u' + ++n;
    const grant = jwt(user, ['a', 'x', 'y']);
    const a = createClient({ url: fake.base, token: grant, channels: ['a'], pingGrace: 2000 });
    clients.push(a);
    await a.ready();
    let calls = 0;
    // The first channel change's check is slow, the second's fast.
    const token = async () => (await new Promise((r) => setTimeout(r, ++calls == 2 ? 100 : 10)), grant);
    const b = createClient({ url: fake.base, token, channels: ['a'], pingGrace: 2000 });
    clients.push(b);
    const got: EventMessage[] = [];
    b.on('event', (e) => got.push(e));
    await b.ready();
    expect(b.leader).toBe(false);
    b.subscribe('x');
    b.subscribe('y');
    await new Promise((r) => setTimeout(r, 300));
    await b.ready();
    fake.publish('x', 1);
    fake.publish('y', 2);
    await vi.waitFor(() => expect(got.map((e) => e.data)).toEqual([1, 2]));
  });

  it("a new tab reports only once it holds its own lock: the leader's watch on it never finds it free and drops it", async () => {
    const user = 'u' + ++n;
    const a = tab(user);
    await a.c.ready();
    const hellos = fake.log.hellos.length;
    // This tab's lock requests reach the lock manager late (in Chromium a page's first one binds the interface).
    const late = {
      request: (...args: Parameters<LockManager['request']>) =>
        new Promise((r) => setTimeout(r, 30)).then(() => (locks.request as (...a: unknown[]) => Promise<unknown>)(...args)),
    };
    vi.stubGlobal('navigator', { onLine: true, locks: late });
    const b = tab(user, ['b']);
    vi.stubGlobal('navigator', { onLine: true, locks });
    await b.c.ready();
    await new Promise((r) => setTimeout(r, 300));
    // One more hello, for the union; not one without b's channel and another with it.
    expect(fake.log.hellos.slice(hellos).map((h) => Object.keys(h.channels).sort().join())).toEqual(['a,b']);
    expect(b.c.state).toBe('open');
  });

  it("close() while its token is being checked: the client stays closed (the check's answer neither joins nor connects alone)", async () => {
    const b = await besideLeaderWithSlowToken();
    const states: string[] = [];
    b.on('state', (x) => states.push(x));
    b.close();
    await new Promise((r) => setTimeout(r, 300));
    expect(states).toEqual(['stopped']);
    expect(b.state).toBe('stopped');
    expect(b.leader).toBe(false);
    expect(fake.subscribers()).toBe(1);
    expect(fake.log.hellos.every((h) => !('b' in h.channels))).toBe(true);
  });
});

/** A tab's channel changes and its token, in a follower and in the leader, as a client of its own does them. */
describe('a tab changes channels as a client of its own does', () => {
  /** Two tabs of one user on `a`; the one under test (`role`) asks its token function (50 ms) for a, b and c. */
  async function pair(role: 'leader' | 'follower') {
    const user = 'u' + ++n;
    const calls: string[][] = [];
    const token = async ({ channels }: { channels: string[] }) => (calls.push(channels), await new Promise((r) => setTimeout(r, 50)), jwt(user, ['a', 'b', 'c']));
    const mk = (t: ClientOptions['token']) => {
      const c = createClient({ url: fake.base, token: t, channels: ['a'], pingGrace: 2000 });
      clients.push(c);
      return c;
    };
    const first = mk(role == 'leader' ? token : jwt(user, ['a', 'b', 'c']));
    await first.ready();
    const second = mk(role == 'leader' ? jwt(user, ['a', 'b', 'c']) : token);
    await second.ready();
    const me = role == 'leader' ? first : second;
    expect(me.leader).toBe(role == 'leader');
    const got: unknown[] = [];
    me.on('event', (e) => got.push(e.data));
    calls.length = 0;
    return { me, got, calls };
  }

  for (const role of ['leader', 'follower'] as const) {
    it(`${role}: subscribe() then ready() waits until the channel is carried; what is published next arrives`, async () => {
      const { me, got } = await pair(role);
      me.subscribe('b');
      // (It stayed `open`, and ready() resolved before the token check: the event below was lost.)
      expect(me.state).toBe('connecting');
      await me.ready();
      fake.publish('b', 1);
      await vi.waitFor(() => expect(got).toEqual([1]));
    });

    it(`${role}: after unsubscribe() returns, the channel is gone: no cursor, no event, no token asked`, async () => {
      const { me, got, calls } = await pair(role);
      me.subscribe('b');
      await me.ready();
      fake.publish('b', 1);
      await vi.waitFor(() => expect(got).toEqual([1]));
      calls.length = 0;
      me.unsubscribe('b');
      // (Both still held b until a token check of a smaller set was done.)
      expect(Object.keys(me.cursors())).toEqual(['a']);
      fake.publish('b', 2);
      fake.publish('a', 3);
      await vi.waitFor(() => expect(got).toEqual([1, 3]));
      await new Promise((r) => setTimeout(r, 100));
      expect(got).toEqual([1, 3]);
      expect(calls).toEqual([]);
    });
  }

  /** A tab beside a leader, whose token function's first call is `first` and later ones grant; its errors once ready. */
  async function besideLeaderFirstTokenCall(first: () => Promise<string>, opts: Partial<ClientOptions> = {}) {
    const user = 'u' + ++n;
    await tab(user).c.ready();
    let calls = 0;
    const token = () => (++calls == 1 ? first() : jwt(user, ['a', 'b']));
    const b = createClient({ url: fake.base, token, channels: ['a'], pingGrace: 2000, backoff: { base: 100 }, ...opts });
    clients.push(b);
    const errors: string[] = [];
    b.on('error', (e) => errors.push(e.message));
    await b.ready();
    return { b, errors };
  }

  it('a token function that fails once: the tab reports the error, asks again after a backoff, and joins the group', async () => {
    const { b, errors } = await besideLeaderFirstTokenCall(() => Promise.reject(new Error('backend down')));
    // (It connected alone for good, without a word: two connections, and two tabs marking each event `first`.)
    expect(errors).toEqual(['TOKEN_FETCH_FAILED: backend down']);
    expect(b.leader).toBe(false);
    expect(fake.subscribers()).toBe(1);
  });

  it('a token function that never answers fails after tokenTimeout, as in a client of its own; the tab then joins', async () => {
    // (It stayed `connecting` for ever, and every later channel change waited behind the check.)
    const { b, errors } = await besideLeaderFirstTokenCall(() => new Promise<string>(() => {}), { tokenTimeout: 300 });
    expect(errors).toEqual(['TOKEN_FETCH_FAILED: timeout']);
    expect(b.leader).toBe(false);
    expect(fake.subscribers()).toBe(1);
  });
});
