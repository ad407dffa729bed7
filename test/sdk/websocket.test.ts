import { describe, expect, it } from 'vitest';
import { useFake } from './helpers.js';

const { fake, client, fire } = useFake();

/** random() = 0.5: every full-jitter delay is half its bound (500 ms for the first retry). */
const half = () => 0.5;

describe('websocket transport', () => {
  it('sends hello with null cursors on first connect and takes the welcome heads', async () => {
    const h = client();
    await h.tick();
    expect(fake.log.hellos).toEqual([{ type: 'hello', token: 'tok', channels: { a: null, b: null } }]);
    expect(h.c.cursors()).toEqual({ a: 'a-0', b: 'a-0' });
    expect(h.states).toEqual(['open']);
  });

  it('answers every ping with pong', async () => {
    const h = client();
    await h.tick();
    fake.sendRaw('{"type":"ping"}');
    fake.sendRaw('{"type":"ping"}');
    await h.tick();
    expect(fake.log.pongs).toBe(2);
  });

  it('keeps the socket 1 ms before ping + grace of silence and drops it at the deadline', async () => {
    const h = client({ random: half });
    await h.tick();
    await h.tick(25_000 + 10_000 - 1);
    expect(h.c.state).toBe('open');
    expect(fake.log.connections).toBe(1);
    await h.tick(1);
    expect(h.c.state).toBe('connecting');
    await h.tick(500);
    expect(fake.log.connections).toBe(2);
    expect(h.c.state).toBe('open');
  });

  it('any message, not only ping, keeps the watchdog quiet', async () => {
    const h = client({ pingGrace: 1000 });
    await h.tick();
    await h.tick(25_000);
    fake.publish('a', 1);
    await h.tick(25_999);
    expect(fake.log.connections).toBe(1);
    await h.tick(1);
    expect(h.c.state).toBe('connecting');
  });

  it('checks the watchdog by wall clock on focus, visibilitychange and online (woken laptop)', async () => {
    for (const ev of ['focus', 'visibilitychange', 'online']) {
      const h = client({ random: half });
      await h.tick();
      h.clock.jump(36_000); // slept: timers have not fired yet
      expect(h.c.state).toBe('open');
      fire(ev);
      expect(h.c.state).toBe('connecting');
      h.c.close();
    }
  });

  it('resumes from the held cursors after a drop and delivers what it missed', async () => {
    const h = client({ random: half });
    await h.tick();
    fake.publish('a', 1);
    await h.tick();
    fake.closeAll(1011);
    await h.tick();
    fake.publish('a', 2);
    fake.publish('b', 3);
    await h.tick(500);
    expect(fake.log.hellos[1]!.channels).toEqual({ a: 'a-1', b: 'a-0' });
    expect(h.events.map((e) => e.data)).toEqual([1, 2, 3]);
  });

  it.each([1000, 1002, 1006, 1007, 1009, 1011, 1013, 4408])('reconnects with backoff after close %i', async (code) => {
    const h = client({ random: half });
    await h.tick();
    fake.closeAll(code, 'x');
    await h.tick(499);
    expect(fake.log.connections).toBe(1);
    expect(h.c.state).toBe('connecting');
    await h.tick(1);
    expect(fake.log.connections).toBe(2);
    expect(h.c.state).toBe('open');
    expect(h.errors).toEqual([]);
  });

  it('after 1012 waits a uniform delay within the window given in the reason', async () => {
    const h = client({ random: () => 0.25 });
    await h.tick();
    fake.closeAll(1012, '8000');
    await h.tick(1999);
    expect(fake.log.connections).toBe(1);
    await h.tick(1);
    expect(fake.log.connections).toBe(2);
  });

  it('after 1012 without a numeric window backs off normally', async () => {
    const h = client({ random: () => 0.25 });
    await h.tick();
    fake.closeAll(1012, 'restarting');
    await h.tick(249);
    expect(fake.log.connections).toBe(1);
    await h.tick(1);
    expect(fake.log.connections).toBe(2);
  });

  it.each([
    [4400, 'BAD_REQUEST'],
    [4403, 'FORBIDDEN'],
  ])('stops with an error after close %i and never retries', async (code, err) => {
    const h = client();
    await h.tick();
    fake.closeAll(code, 'nope');
    await h.tick();
    expect(h.c.state).toBe('stopped');
    expect(h.states.at(-1)).toBe('stopped');
    expect(h.errors.map((e) => [e.code, e.closeCode])).toEqual([[err, code]]);
    await h.tick(600_000);
    expect(fake.log.connections).toBe(1);
  });

  it('a channel the token does not grant stops with FORBIDDEN', async () => {
    fake.knobs.granted = ['a'];
    const h = client();
    await h.tick();
    expect(h.c.state).toBe('stopped');
    expect(h.errors[0]!.code).toBe('FORBIDDEN');
  });

  it('after 4401 calls token() again and reconnects at once with the fresh token', async () => {
    let n = 0;
    fake.knobs.accept = (t) => t === 'fresh';
    const h = client({ token: async () => (n++ ? 'fresh' : 'stale') });
    await h.tick();
    await h.tick();
    expect(n).toBe(2);
    expect(fake.log.hellos.map((x) => x.token)).toEqual(['stale', 'fresh']);
    expect(h.c.state).toBe('open');
    expect(h.errors).toEqual([]);
  });

  it('stops with TOKEN_REJECTED when 4401 repeats after the refresh', async () => {
    let n = 0;
    fake.knobs.accept = () => false;
    const h = client({ token: () => `t${n++}` });
    await h.tick();
    await h.tick();
    expect(h.c.state).toBe('stopped');
    expect(h.errors.map((e) => [e.code, e.closeCode])).toEqual([['TOKEN_REJECTED', 4401]]);
    expect(fake.log.hellos).toHaveLength(2);
    await h.tick(600_000);
    expect(fake.log.connections).toBe(2);
  });

  it('a 4401 after a welcome gets its one refresh again (the retry budget resets on welcome)', async () => {
    let n = 0;
    const h = client({ token: () => `t${n++}` });
    await h.tick();
    fake.closeAll(4401, 'expired');
    await h.tick();
    expect(h.c.state).toBe('open');
    fake.closeAll(4401, 'expired');
    await h.tick();
    expect(h.c.state).toBe('open');
    expect(n).toBe(3);
  });

  it('reports a failing token() as TOKEN_FETCH_FAILED and retries after backoff without stalling', async () => {
    let n = 0;
    const h = client({
      random: half,
      transport: 'websocket',
      token: () => {
        if (n++ < 2) throw new Error('offline api');
        return 'tok';
      },
    });
    await h.tick();
    expect(h.errors.map((e) => e.code)).toEqual(['TOKEN_FETCH_FAILED']);
    await h.tick(500);
    expect(h.errors).toHaveLength(2);
    await h.tick(1000);
    expect(h.c.state).toBe('open');
    expect(fake.log.connections).toBe(1);
  });

  it('treats an empty token as a fetch failure', async () => {
    const h = client({ token: () => '', transport: 'websocket' });
    await h.tick();
    expect(h.errors[0]!.code).toBe('TOKEN_FETCH_FAILED');
    expect(fake.log.connections).toBe(0);
  });

  it('reports a malformed frame as PROTOCOL, drops the socket and resumes', async () => {
    const h = client({ random: half });
    await h.tick();
    fake.publish('a', 1);
    fake.sendRaw('{not json');
    await h.tick();
    expect(h.errors.map((e) => e.code)).toEqual(['PROTOCOL']);
    await h.tick(500);
    expect(fake.log.hellos[1]!.channels.a).toBe('a-1');
    expect(h.c.state).toBe('open');
  });

  it('stays closed when an error handler closes the client', async () => {
    const h = client();
    h.c.on('error', () => h.c.close());
    await h.tick();
    fake.sendRaw('{not json');
    await h.tick(60_000);
    expect(h.c.state).toBe('stopped');
    expect(fake.log.connections).toBe(1);
  });

  it('ignores a message of an unknown type', async () => {
    const h = client();
    await h.tick();
    fake.sendRaw('{"type":"novelty"}');
    await h.tick();
    expect(h.errors).toEqual([]);
    expect(h.c.state).toBe('open');
  });

  it('gives an attempt connectTimeout ms to reach welcome', async () => {
    fake.knobs.ws = 'mute';
    const h = client({ transport: 'websocket', random: half, connectTimeout: 5000 });
    await h.tick();
    await h.tick(4999);
    expect(fake.log.connections).toBe(1);
    await h.tick(1);
    await h.tick(500);
    expect(fake.log.connections).toBe(2);
  });

  it('grows the delay per failed attempt and resets it after a connection stayed up resetAfter ms', async () => {
    fake.knobs.ws = 'refuse';
    const h = client({ transport: 'websocket', random: () => 0.999 });
    await h.tick();
    const at: number[] = [];
    for (let t = 0; t < 8000; t += 100) {
      const before = fake.log.connections;
      await h.tick(100);
      if (fake.log.connections > before) at.push(t + 100);
    }
    // attempts after ~1 s, then ~2 s more, then ~4 s more
    expect(at).toEqual([1000, 3000, 7000]);
    fake.knobs.ws = 'ok';
    await h.tick(8000);
    expect(h.c.state).toBe('open');
    await h.tick(10_000);
    fake.closeAll(1011);
    await h.tick(998);
    expect(fake.log.connections).toBe(5);
    await h.tick(2);
    expect(fake.log.connections).toBe(6);
  });

  it('reconnect() drops the socket and connects again at once', async () => {
    const h = client();
    await h.tick();
    h.c.reconnect();
    await h.tick();
    expect(fake.log.connections).toBe(2);
    expect(h.c.state).toBe('open');
  });

  it('reconnect() during a backoff wait connects at once', async () => {
    fake.knobs.ws = 'refuse';
    const h = client({ transport: 'websocket', random: () => 0.999 });
    await h.tick();
    await h.tick(1000);
    expect(fake.log.connections).toBe(2); // now waiting ~2 s
    fake.knobs.ws = 'ok';
    h.c.reconnect();
    await h.tick();
    expect(fake.log.connections).toBe(3);
    expect(h.c.state).toBe('open');
  });

  it('counts a WebSocket constructor that throws (blocked port, CSP) as a failed attempt', async () => {
    class Blocked {
      static CLOSING = 2;
      constructor() {
        throw new DOMException('blocked', 'SecurityError');
      }
    }
    const h = client({ WebSocket: Blocked as unknown as typeof WebSocket, random: half });
    await h.tick();
    await h.tick(500);
    await h.tick();
    expect(h.c.transport).toBe('polling');
    expect(h.c.state).toBe('polling');
  });

  it('an online event without a prior offline leaves an open connection alone', async () => {
    const h = client();
    await h.tick();
    fire('online');
    await h.tick();
    expect(h.states).toEqual(['open']);
    expect(fake.log.connections).toBe(1);
  });

  it('reconnect() after close() does nothing', async () => {
    const h = client();
    await h.tick();
    h.c.close();
    h.c.reconnect();
    await h.tick(60_000);
    expect(fake.log.connections).toBe(1);
    expect(h.c.state).toBe('stopped');
  });

  it('close() stops for good and closes the socket', async () => {
    const h = client();
    await h.tick();
    h.c.close();
    await h.tick(600_000);
    expect(h.c.state).toBe('stopped');
    expect(fake.subscribers()).toBe(0);
    expect(fake.log.connections).toBe(1);
  });
});
