/** Behaviours every transport must show, run on both (test.each). */
import { describe, expect, it } from 'vitest';
import { useFake, type Harness } from './helpers.js';

const { fake, client, nav, fire } = useFake();
const half = () => 0.5;

const transports = ['websocket', 'polling'] as const;
type T = (typeof transports)[number];

/** Connected and, for polling, past the heads-learning first poll. */
async function ready(t: T, opts = {}): Promise<Harness> {
  const h = client({ transport: t, random: half, ...opts });
  await h.tick();
  if (t === 'polling') await h.tick(1000);
  return h;
}

/** Break the transport the way the network would. */
async function breakIt(t: T, h: Harness) {
  if (t === 'websocket') fake.closeAll(1006);
  else {
    fake.knobs.pollQueue.push('network');
    h.c.reconnect(); // abort the held long-poll; the retry meets the network error
  }
  await h.tick();
}

describe.each(transports)('on %s', (t) => {
  it('delivers each channel in publish order', async () => {
    const h = await ready(t);
    fake.publish('a', 1);
    fake.publish('b', 2);
    await h.tick();
    fake.publish('a', 3);
    await h.tick();
    expect(h.events).toEqual([
      { channel: 'a', cursor: 'a-1', data: 1 },
      { channel: 'b', cursor: 'a-1', data: 2 },
      { channel: 'a', cursor: 'a-2', data: 3 },
    ]);
    expect(h.c.cursors()).toEqual({ a: 'a-2', b: 'a-1' });
  });

  it('resumes after a break with nothing lost and nothing twice', async () => {
    const h = await ready(t);
    fake.publish('a', 1);
    await h.tick();
    await breakIt(t, h);
    fake.publish('a', 2);
    fake.publish('b', 3);
    for (let i = 0; i < 5; i++) await h.tick(1000);
    fake.publish('a', 4);
    await h.tick();
    expect(h.events.map((e) => e.data)).toEqual([1, 2, 3, 4]);
    // The break itself is reported (a failed poll is NETWORK), nothing else.
    expect(h.errors.filter((e) => e.code !== 'NETWORK')).toEqual([]);
  });

  it('surfaces a reset when the server cannot prove it holds every event after our cursor', async () => {
    const h = await ready(t);
    fake.publish('a', 1);
    await h.tick();
    await breakIt(t, h);
    fake.restart(); // in-memory server restarted: our cursors are from an old epoch
    fake.publish('a', 'new');
    for (let i = 0; i < 5; i++) await h.tick(1000);
    expect(h.resets).toEqual([
      { channel: 'a', cursor: 'b-1' },
      { channel: 'b', cursor: 'b-0' },
    ]);
    expect(h.c.cursors()).toEqual({ a: 'b-1', b: 'b-0' });
    fake.publish('a', 'after');
    await h.tick();
    expect(h.events.map((e) => e.data)).toEqual([1, 'after']);
  });

  it('gets a reset when more events were missed than the history holds', async () => {
    fake.knobs.history = 2;
    const h = await ready(t);
    await breakIt(t, h);
    for (const n of [1, 2, 3]) fake.publish('a', n);
    for (let i = 0; i < 5; i++) await h.tick(1000);
    expect(h.resets).toEqual([{ channel: 'a', cursor: 'a-3' }]);
    expect(h.events).toEqual([]);
  });

  it('with persist, a reload resumes from the stored cursors', async () => {
    const h = await ready(t, { persist: true });
    fake.publish('a', 1);
    await h.tick();
    h.c.close();
    fake.publish('a', 2); // published while the page reloads
    const again = await ready(t, { persist: true });
    await again.tick(1000);
    expect(again.events.map((e) => e.data)).toEqual([2]);
  });

  it('goes offline with navigator.onLine, makes no attempt, and catches up when back online', async () => {
    const h = await ready(t);
    const offline: unknown[] = [];
    h.c.on('offline', () => offline.push('offline'));
    h.c.on('online', () => offline.push('online'));
    nav.onLine = false;
    fire('offline');
    await h.tick();
    expect(h.c.state).toBe('offline');
    expect(h.c.transport).toBeNull();
    const before = [fake.log.connections, fake.log.polls.length];
    fake.publish('a', 1);
    await h.tick(120_000);
    expect([fake.log.connections, fake.log.polls.length]).toEqual(before);
    nav.onLine = true;
    fire('online');
    for (let i = 0; i < 5; i++) await h.tick(1000);
    expect(h.c.state).toBe(t === 'websocket' ? 'open' : 'polling');
    expect(h.events.map((e) => e.data)).toEqual([1]);
    expect(offline).toEqual(['offline', 'online']);
    expect(h.states).toEqual([t === 'websocket' ? 'open' : 'polling', 'offline', 'connecting', t === 'websocket' ? 'open' : 'polling']);
  });

  it('is live again right after online when nothing was missed', async () => {
    const h = await ready(t);
    nav.onLine = false;
    fire('offline');
    await h.tick(120_000);
    nav.onLine = true;
    fire('online');
    await h.tick();
    expect(h.c.state).toBe(t === 'websocket' ? 'open' : 'polling');
  });

  it('starts offline when navigator.onLine is false', async () => {
    nav.onLine = false;
    const h = client({ transport: t });
    await h.tick(60_000);
    expect(h.c.state).toBe('offline');
    expect(fake.log.connections + fake.log.polls.length).toBe(0);
  });

  it('close() leaves no timer and no request behind', async () => {
    const h = await ready(t);
    await breakIt(t, h); // mid-backoff
    h.c.close();
    await h.tick();
    expect(h.clock.pending()).toEqual([]);
    const before = [fake.log.connections, fake.log.polls.length];
    await h.tick(600_000);
    expect([fake.log.connections, fake.log.polls.length]).toEqual(before);
    expect(h.errors.filter((e) => e.code !== 'NETWORK')).toEqual([]);
  });

  it('emits state once per change', async () => {
    const h = await ready(t);
    await breakIt(t, h);
    for (let i = 0; i < 5; i++) await h.tick(1000);
    h.c.close();
    const live = t === 'websocket' ? 'open' : 'polling';
    expect(h.states).toEqual([live, 'connecting', live, 'stopped']);
  });
});
