import { describe, expect, it, vi } from 'vitest';
import { useFake } from './helpers.js';

const { fake, client } = useFake();
const half = () => 0.5;
const WS_FLAG = 'tidings:ws:http://tidings.test';

describe('fallback to polling and probe back to websocket', () => {
  it('after fallbackAfter (2) failed attempts checks with one poll; it succeeds and WebSocket fails once more: falls back and remembers it', async () => {
    fake.knobs.ws = 'refuse';
    const h = client({ random: half });
    await h.tick();
    expect(fake.log.polls).toHaveLength(0);
    await h.tick(500); // second attempt fails too: the check poll goes out, then one more attempt at once
    await h.tick();
    expect(fake.log.connections).toBe(3);
    expect(fake.log.polls[0]).toMatchObject({ prefer: null });
    expect(h.c.state).toBe('polling');
    expect(h.c.transport).toBe('polling');
    expect(sessionStorage.getItem(WS_FLAG)).toBe('1');
  });

  it('honours fallbackAfter at and past its value', async () => {
    fake.knobs.ws = 'refuse';
    const h = client({ random: half, fallbackAfter: 3 });
    await h.tick();
    await h.tick(500);
    expect(fake.log.polls).toHaveLength(0);
    await h.tick(1000);
    expect(fake.log.connections).toBe(4); // 3 failures, the check poll, the confirming attempt
    expect(fake.log.polls.length).toBeGreaterThan(0);
    expect(h.c.transport).toBe('polling');
  });

  it('never falls back while the server is down (WebSocket and the check poll both fail), and is back on WebSocket when it is up', async () => {
    fake.knobs.ws = 'refuse';
    const h = client({ random: half });
    for (let i = 0; i < 40; i++) {
      fake.knobs.pollQueue.push('network');
      await h.tick(1000);
    }
    expect(fake.log.polls.length).toBeGreaterThan(3);
    expect(h.c.transport).toBe(null);
    expect(h.c.state).toBe('connecting');
    expect(sessionStorage.getItem(WS_FLAG)).toBeNull();
    fake.knobs.ws = 'ok';
    fake.knobs.pollQueue.length = 0;
    await h.tick(31_000);
    expect(h.c.transport).toBe('websocket');
  });

  it('a server back by the time of the check poll: the confirming attempt reaches welcome, no fallback', async () => {
    fake.knobs.ws = 'refuse';
    const h = client({
      random: half,
      // The server finishes restarting just as the check poll goes out.
      fetch: (input, init) => ((fake.knobs.ws = 'ok'), fetch(input, init)),
    });
    await h.tick();
    await h.tick(500);
    await h.tick();
    expect(fake.log.polls).toHaveLength(1);
    expect(fake.log.connections).toBe(3);
    expect(h.c.transport).toBe('websocket');
    expect(h.c.state).toBe('open');
    expect(sessionStorage.getItem(WS_FLAG)).toBeNull();
  });

  it('reconnect() called again and again while connecting never falls back', async () => {
    const h = client({ random: half, fallbackAfter: 1 });
    fake.knobs.ws = 'mute';
    for (let i = 0; i < 20; i++) {
      h.c.reconnect();
      await h.tick(50);
    }
    expect(fake.log.polls).toHaveLength(0);
    fake.knobs.ws = 'ok';
    h.c.reconnect();
    await h.tick();
    expect(h.c.state).toBe('open');
    expect(h.c.transport).toBe('websocket');
  });

  it('does not start polling when an error handler closed the client', async () => {
    let n = 0;
    const h = client({ random: half, fallbackAfter: 1, token: () => (n++ ? 'tok' : Promise.reject(new Error('down'))) });
    h.c.on('error', () => h.c.close());
    await h.tick(60_000);
    expect(h.c.state).toBe('stopped');
    expect(fake.log.polls).toHaveLength(0);
  });

  it('never falls back with transport: websocket', async () => {
    fake.knobs.ws = 'refuse';
    const h = client({ random: half, transport: 'websocket' });
    for (let i = 0; i < 6; i++) await h.tick(30_000);
    expect(fake.log.connections).toBeGreaterThan(4);
    expect(fake.log.polls).toHaveLength(0);
  });

  it('polls from the start when WebSocket is missing', async () => {
    vi.stubGlobal('WebSocket', undefined);
    const h = client();
    await h.tick();
    expect(fake.log.connections).toBe(0);
    expect(h.c.transport).toBe('polling');
  });

  it('probes while polling and switches back on welcome with no loss and no duplicate', async () => {
    fake.knobs.ws = 'refuse';
    const h = client({ random: half });
    await h.tick();
    await h.tick(500);
    await h.tick();
    await h.tick(1000); // long-poll with the validator is held now
    fake.publish('a', 1);
    await h.tick();
    expect(h.events.map((e) => e.data)).toEqual([1]);
    fake.knobs.ws = 'ok';
    const before = fake.log.connections;
    // first probe: uniform in [15 s, 30 s] after the fallback (t = 500); with random 0.5 at t = 23 000
    await h.tick(21_499);
    expect(fake.log.connections).toBe(before);
    fake.publish('a', 2); // the held long-poll delivers this one
    fake.publish('b', 3);
    await h.tick(1);
    await h.tick();
    expect(fake.log.connections).toBe(before + 1);
    expect(h.c.state).toBe('open');
    expect(h.c.transport).toBe('websocket');
    fake.publish('a', 4);
    await h.tick();
    expect(h.events.map((e) => e.data)).toEqual([1, 2, 3, 4]);
    const polls = fake.log.polls.length;
    await h.tick(120_000);
    expect(fake.log.polls).toHaveLength(polls);
    expect(sessionStorage.getItem(WS_FLAG)).toBeNull();
  });

  it('drops the replay of a slow probe that polling already delivered (dedup across the switch)', async () => {
    fake.knobs.ws = 'refuse';
    const h = client({ random: half, longPoll: 0 });
    await h.tick();
    await h.tick(500);
    await h.tick(); // polling since t = 500, probe due at t = 23 000
    fake.knobs.ws = 'mute'; // the probe's hello will wait for its welcome
    await h.tick(22_500);
    expect(fake.log.hellos.at(-1)!.channels).toEqual({ a: 'a-0', b: 'a-0' });
    fake.publish('a', 1);
    fake.publish('a', 2);
    await h.tick(1000); // a plain poll delivers 1 and 2 meanwhile
    expect(h.events.map((e) => e.data)).toEqual([1, 2]);
    fake.answerMuted(); // welcome, then the replay after a-0: 1 and 2 again
    await h.tick();
    expect(h.c.transport).toBe('websocket');
    fake.publish('a', 3);
    await h.tick();
    expect(h.events.map((e) => e.data)).toEqual([1, 2, 3]);
    expect(h.c.cursors()).toEqual({ a: 'a-3', b: 'a-0' });
  });

  it('backs off probes from probe.first up to probe.max', async () => {
    fake.knobs.ws = 'refuse';
    const h = client({ random: () => 1 - 1e-9, probe: { first: 1000, max: 4000 } });
    await h.tick();
    await h.tick(1000);
    await h.tick();
    const start = fake.log.connections;
    const at: number[] = [];
    for (let t = 0; t < 16_000; t += 100) {
      const c = fake.log.connections;
      await h.tick(100);
      if (fake.log.connections > c) at.push(t + 100);
    }
    expect(fake.log.connections - start).toBe(at.length);
    // nominal 1 s, 2 s, 4 s, 4 s, 4 s after each failure
    expect(at).toEqual([1000, 3000, 7000, 11_000, 15_000]);
  });

  it('starts a reload on polling and probes when this session saw WebSocket fail', async () => {
    sessionStorage.setItem(WS_FLAG, '1');
    const h = client({ random: half });
    await h.tick();
    expect(fake.log.connections).toBe(0);
    expect(h.c.transport).toBe('polling');
    await h.tick(22_500);
    expect(fake.log.connections).toBe(1);
    expect(h.c.transport).toBe('websocket');
  });

  it('survives a sessionStorage that throws', async () => {
    vi.stubGlobal('sessionStorage', {
      getItem() {
        throw new Error('SecurityError');
      },
      setItem() {
        throw new Error('SecurityError');
      },
    });
    fake.knobs.ws = 'refuse';
    const h = client({ random: half, persist: true });
    await h.tick();
    await h.tick(500);
    await h.tick();
    expect(h.c.transport).toBe('polling');
  });
});
