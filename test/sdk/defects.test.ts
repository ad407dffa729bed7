/**
 * One test (or a few) per defect named in issue 9, each written to fail on the
 * first-generation SDK and pass now. Where the old API allows, the test only
 * uses it (createClient, on, close, reconnect, cursors, persist), so it can be
 * run against the old code as it stands.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { watchdog } from '../../src/watchdog.js';
import { manualClock, useFake } from './helpers.js';
import type { ManualClock } from '../support/clock.js';

const { fake, client, doc, fire } = useFake();
const half = () => 0.5;
const WS_FLAG = 'tidings:ws:http://tidings.test';

afterEach(() => vi.restoreAllMocks());

describe('1. a short outage does not move the client to polling', () => {
  it('a crash and a 1.6 s restart: back on WebSocket, nothing remembered for the next reload', async () => {
    const h = client({ random: half });
    await h.tick();
    fake.publish('a', 1);
    await h.tick();
    // Crash: the socket drops, nothing listens for 1.6 s (WebSocket refused, polls fail on the network).
    fake.knobs.ws = 'refuse';
    for (let i = 0; i < 20; i++) fake.knobs.pollQueue.push('network');
    fake.closeAll(1006);
    fake.publish('a', 2);
    await h.tick(1600);
    fake.knobs.ws = 'ok';
    fake.knobs.pollQueue.length = 0;
    await h.tick(20_000);
    expect(h.c.transport).toBe('websocket');
    expect(sessionStorage.getItem(WS_FLAG)).toBeNull();
    expect(h.events.map((e) => e.data)).toEqual([1, 2]);
  });

  it('reconnect() while a socket is connecting, many times over, does not count toward fallback', async () => {
    const h = client({ random: half, fallbackAfter: 2 });
    fake.knobs.ws = 'mute';
    for (let i = 0; i < 10; i++) {
      h.c.reconnect();
      await h.tick(10);
    }
    expect(fake.log.polls).toHaveLength(0);
    expect(sessionStorage.getItem(WS_FLAG)).toBeNull();
  });

  it('1012 before welcome and a failing token() do not count either', async () => {
    let n = 0;
    const h = client({ random: half, token: () => (n++ % 2 ? 'tok' : Promise.reject(new Error('auth down'))) });
    for (let i = 0; i < 4; i++) fake.knobs.closeOnHello.push([1012, '100']);
    await h.tick(60_000);
    expect(fake.log.polls).toHaveLength(0);
    expect(h.c.transport).toBe('websocket');
  });
});

describe('2. persist: cursors per channel, several clients on one page', () => {
  it('two widgets (mail + news) both resume after a reload, nothing published during the reload is lost', async () => {
    const mail = client({ channels: ['mail'], persist: true });
    const news = client({ channels: ['news'], persist: true });
    await mail.tick();
    await news.tick();
    fake.publish('mail', 'm1');
    fake.publish('news', 'n1');
    await mail.tick();
    await news.tick();
    expect([...mail.events, ...news.events].map((e) => e.data)).toEqual(['m1', 'n1']);
    mail.c.close();
    news.c.close();
    fake.publish('mail', 'm2'); // during the reload
    fake.publish('news', 'n2');
    const mail2 = client({ channels: ['mail'], persist: true });
    const news2 = client({ channels: ['news'], persist: true });
    await mail2.tick();
    await news2.tick();
    expect(mail2.events.map((e) => e.data)).toEqual(['m2']);
    expect(news2.events.map((e) => e.data)).toEqual(['n2']);
  });
});

describe('4. listener isolation', () => {
  it('a throwing listener does not lose the event for the others, and the cursor is right', async () => {
    const report = vi.spyOn(console, 'error').mockImplementation(() => {});
    const h = client({ random: half });
    const got: unknown[] = [];
    h.c.on('event', () => {
      throw new Error('app bug');
    });
    h.c.on('event', (e) => got.push(e.data));
    await h.tick();
    fake.publish('a', 1);
    fake.publish('a', 2);
    await h.tick();
    expect(got).toEqual([1, 2]);
    expect(h.c.cursors().a).toBe('a-2');
    expect(h.c.state).toBe('open');
    expect(fake.log.connections).toBe(1);
    expect(report).toHaveBeenCalled();
  });

  it('a throw in the middle of a poll batch does not drop the rest of the batch', async () => {
    vi.spyOn(console, 'error').mockImplementation(() => {});
    const h = client({ random: half, transport: 'polling', longPoll: 0 });
    await h.tick();
    for (let i = 1; i <= 5; i++) fake.publish('a', i);
    h.c.on('event', (e) => {
      if (e.data === 2) throw new Error('app bug');
    });
    await h.tick(1000);
    expect(h.events.map((e) => e.data)).toEqual([1, 2, 3, 4, 5]);
    await h.tick(5000);
    expect(h.events.map((e) => e.data)).toEqual([1, 2, 3, 4, 5]);
  });

  it('a throwing state handler neither makes close() throw nor leaves the socket open', async () => {
    vi.spyOn(console, 'error').mockImplementation(() => {});
    const h = client();
    await h.tick();
    h.c.on('state', () => {
      throw new Error('app bug');
    });
    expect(() => h.c.close()).not.toThrow();
    await h.tick();
    expect(h.c.state).toBe('stopped');
    expect(fake.subscribers()).toBe(0);
  });
});

describe('5. dedup for any overlap', () => {
  it('a probe whose replay overlaps polling by 500 events shows each event once', async () => {
    sessionStorage.setItem(WS_FLAG, '1'); // start on polling, probe in the background
    const h = client({ random: half, longPoll: 0 });
    await h.tick();
    fake.knobs.ws = 'mute'; // the probe's hello waits for its welcome
    await h.tick(22_500);
    expect(fake.log.hellos).toHaveLength(1);
    for (let i = 1; i <= 500; i++) fake.publish('a', i);
    await h.tick(1000); // polling delivers all 500
    expect(h.events).toHaveLength(500);
    fake.answerMuted(); // welcome, then the replay of the same 500
    await h.tick();
    expect(h.c.transport).toBe('websocket');
    fake.publish('a', 501);
    await h.tick();
    expect(h.events.map((e) => e.data)).toEqual(Array.from({ length: 501 }, (_, i) => i + 1));
  });
});

describe('6. polling hears wake-ups', () => {
  it('a fresh start on polling long-polls right after the heads poll, not a full X-Poll-Interval later', async () => {
    fake.knobs.pollInterval = 5;
    const h = client({ random: half, transport: 'polling' });
    await h.tick();
    expect(fake.log.polls.map((p) => p.prefer)).toEqual([null, 'wait=25']);
  });

  it('a page coming back to the foreground polls at once instead of waiting out the hidden slow-down', async () => {
    fake.knobs.pollInterval = 2;
    doc.visibilityState = 'hidden';
    const h = client({ random: half, transport: 'polling', longPoll: 0 });
    await h.tick();
    expect(fake.log.polls).toHaveLength(1); // next one 8 s away while hidden
    doc.visibilityState = 'visible';
    fire('visibilitychange');
    await h.tick();
    expect(fake.log.polls).toHaveLength(2);
  });

  it('after sleep, a dead long-poll is dropped on wake (focus) by the wall clock, not after its 35 s timer', async () => {
    const h = client({ random: half, transport: 'polling' });
    await h.tick(); // the long-poll is held
    expect(fake.log.polls).toHaveLength(2);
    h.clock.jump(60_000); // the laptop slept: no timer ran
    fire('focus');
    await h.tick(1000); // dropped at once, retried after a short backoff
    expect(fake.log.polls.length).toBeGreaterThan(2);
    expect(h.c.state).toBe('polling');
  });
});

describe('7. Retry-After has a floor and jitter', () => {
  it('Retry-After: 0 waits at least 1 s (no tight loop)', async () => {
    const h = client({ random: () => 0, transport: 'polling', longPoll: 0 });
    await h.tick();
    for (let i = 0; i < 5; i++) fake.knobs.pollQueue.push({ status: 503, headers: { 'Retry-After': '0' } });
    await h.tick(1000); // the first 503
    expect(fake.log.polls).toHaveLength(2);
    await h.tick(999);
    expect(fake.log.polls).toHaveLength(2);
    await h.tick(1);
    expect(fake.log.polls).toHaveLength(3);
  });

  it('clients refused together with the same Retry-After do not come back together', async () => {
    const at: number[] = [];
    for (const r of [0, 0.5, 0.99]) {
      fake.reset();
      const h = client({ random: () => r, transport: 'polling', longPoll: 0 });
      await h.tick();
      fake.knobs.pollQueue.push({ status: 429, headers: { 'Retry-After': '10' } });
      await h.tick(1000);
      const n = fake.log.polls.length;
      let t = 0;
      while (fake.log.polls.length === n && t < 20_000) await h.tick(250), (t += 250);
      at.push(t);
      h.c.close();
    }
    expect(new Set(at).size).toBe(3);
    expect(Math.min(...at)).toBeGreaterThanOrEqual(10_000);
  });
});

describe('8. the watchdog does not trust a wall clock set back', () => {
  /** Timers run on monotonic time (as in browsers); now() is the wall clock, which `setBack` moves. */
  function wallClock(): ManualClock & { setBack(ms: number): void } {
    const mono = manualClock();
    let offset = 0;
    return { ...mono, now: () => mono.now() + offset, setBack: (ms) => void (offset -= ms) };
  }

  it('with the clock set back 1 h, a dead socket is still detected after 35 s', () => {
    const clock = wallClock();
    let fired = 0;
    const w = watchdog(clock, () => fired++);
    w.arm(35_000);
    clock.setBack(3_600_000);
    clock.advance(35_000);
    expect(fired).toBe(1);
  });

  it('end to end: a silent socket is dropped ping + grace after the clock went back', async () => {
    const clock = wallClock();
    const h = client({ random: half }, clock);
    await h.tick();
    clock.setBack(3_600_000);
    fake.knobs.ws = 'mute';
    await h.tick(35_000); // ping 25 s + grace 10 s, and no message came
    expect(h.c.state).toBe('connecting');
  });
});

describe('9. no silent failures', () => {
  it('a wrong path (404 on the poll) is reported as HTTP with status', async () => {
    const h = client({ random: half, transport: 'polling' });
    fake.knobs.pollQueue.push({ status: 404, body: 'not found' });
    await h.tick();
    expect(h.errors.map((e) => [e.code, e.status])).toEqual([['HTTP', 404]]);
    expect(h.c.state).toBe('connecting');
  });

  it('a network failure is reported as NETWORK with the cause', async () => {
    const h = client({ random: half, transport: 'polling' });
    fake.knobs.pollQueue.push('network');
    await h.tick();
    expect(h.errors[0]?.code).toBe('NETWORK');
    expect(h.errors[0]?.cause).toBeInstanceOf(Error);
  });

  it('a CSP block (the WebSocket constructor throws) is reported with the cause and retried', async () => {
    let n = 0;
    class Blocked extends WebSocket {
      constructor(u: string | URL, p?: string | string[]) {
        if (n++ < 1) throw new DOMException('blocked by CSP', 'SecurityError');
        super(u, p);
      }
    }
    const h = client({ random: half, WebSocket: Blocked });
    await h.tick(1000);
    expect(h.errors[0]?.code).toBe('NETWORK');
    expect((h.errors[0]?.cause as DOMException).name).toBe('SecurityError');
    expect(h.c.state).toBe('open');
  });

  it('a token() that never settles fails after tokenTimeout, and the client recovers', async () => {
    let n = 0;
    const h = client({ random: half, token: () => (n++ ? 'tok' : new Promise<string>(() => {})) });
    await h.tick(10_000);
    expect(h.errors.map((e) => e.message)).toEqual(['TOKEN_FETCH_FAILED: timeout']);
    await h.tick(1000);
    expect(h.c.state).toBe('open');
  });
});
