import { describe, expect, it } from 'vitest';
import { headerDelay } from '../../src/messages.js';
import { DEFAULT_POLL_INTERVAL, MIN_POLL_GAP } from '../../src/policy.js';
import { useFake } from './helpers.js';

const { fake, client, doc } = useFake();

const half = () => 0.5;
const polling = { transport: 'polling' as const, random: half };

describe('polling transport', () => {
  it('learns heads with a first poll without If-None-Match, then long-polls with the validator', async () => {
    const h = client(polling);
    await h.tick();
    expect(fake.log.polls[0]).toMatchObject({ inm: null, prefer: null, auth: 'Bearer tok' });
    expect(fake.log.polls[0]!.url).toBe('http://tidings.test/v1/poll?channels=a,b');
    await h.tick(1000); // X-Poll-Interval: 1 after the plain first poll
    expect(fake.log.polls[1]).toMatchObject({ inm: '"a=a-0;b=a-0"', prefer: 'wait=25' });
    expect(h.c.state).toBe('polling');
    expect(h.c.transport).toBe('polling');
    expect(h.states).toEqual(['polling']);
  });

  it('asks fetch for cache: no-store, so the HTTP cache cannot replay an old 200 with its own validator', async () => {
    const modes: (RequestCache | undefined)[] = [];
    const spy: typeof fetch = (input, init) => (modes.push(init?.cache), fetch(input, init));
    const h = client({ ...polling, fetch: spy });
    await h.tick();
    await h.tick(1000);
    expect(modes.length).toBeGreaterThanOrEqual(2);
    expect(new Set(modes)).toEqual(new Set(['no-store']));
  });

  it('delivers what a held long-poll returns and polls again at once', async () => {
    const h = client(polling);
    await h.tick();
    await h.tick(1000);
    fake.publish('a', 'x');
    await h.tick();
    expect(h.events).toEqual([{ channel: 'a', cursor: 'a-1', data: 'x' }]);
    expect(fake.log.polls).toHaveLength(3);
    expect(fake.log.polls[2]!.inm).toBe('"a=a-1;b=a-0"');
  });

  it('after a failed poll the retry is plain, so it answers at once and state is polling again', async () => {
    const h = client(polling);
    await h.tick();
    await h.tick(1000);
    fake.knobs.pollQueue.push('network');
    h.c.reconnect();
    await h.tick(); // the aborted poll, then at once the retry meeting the network error
    expect(h.c.state).toBe('connecting');
    await h.tick(500);
    expect(fake.log.polls.at(-1)).toMatchObject({ inm: '"a=a-0;b=a-0"', prefer: null });
    expect(h.c.state).toBe('polling');
    await h.tick(1000);
    expect(fake.log.polls.at(-1)!.prefer).toBe('wait=25');
  });

  it('a long-poll that ends in 304 polls again at once', async () => {
    const h = client(polling);
    await h.tick();
    await h.tick(1000);
    await h.tick(20_000); // held 20 s
    fake.release();
    await h.tick();
    expect(fake.log.polls).toHaveLength(3);
    expect(h.events).toEqual([]);
  });

  it('plain polling (longPoll: 0) loops on 304 at the X-Poll-Interval pace', async () => {
    fake.knobs.pollInterval = 3;
    const h = client({ ...polling, longPoll: 0 });
    await h.tick();
    await h.tick(3000);
    expect(fake.log.polls[1]).toMatchObject({ inm: '"a=a-0;b=a-0"', prefer: null });
    await h.tick(2999);
    expect(fake.log.polls).toHaveLength(2);
    await h.tick(1);
    expect(fake.log.polls).toHaveLength(3);
    fake.knobs.pollInterval = 7; // the server raises it under load
    await h.tick(3000);
    await h.tick(6999);
    expect(fake.log.polls).toHaveLength(4);
    await h.tick(1);
    expect(fake.log.polls).toHaveLength(5);
  });

  it(`waits DEFAULT_POLL_INTERVAL (${DEFAULT_POLL_INTERVAL} ms) when X-Poll-Interval is missing`, async () => {
    const at: number[] = [];
    const h = client({
      ...polling,
      longPoll: 0,
      fetch: async () => (at.push(h.clock.now()), new Response(null, { status: 304 })),
    });
    await h.tick();
    await h.tick(DEFAULT_POLL_INTERVAL - 1);
    expect(at).toHaveLength(1);
    await h.tick(1);
    expect(at).toHaveLength(2);
  });

  it('X-Poll-Interval: 0 polls again at once after a 200, but a quick 304 waits MIN_POLL_GAP', async () => {
    fake.knobs.pollInterval = 0;
    const h = client({ ...polling, longPoll: 0 });
    await h.tick(); // heads (200), then at once a poll with the validator: 304
    expect(fake.log.polls).toHaveLength(2);
    await h.tick(MIN_POLL_GAP - 1);
    expect(fake.log.polls).toHaveLength(2);
    await h.tick(1);
    expect(fake.log.polls).toHaveLength(3);
    fake.publish('a', 1);
    await h.tick(MIN_POLL_GAP); // 200 with the event, then at once the next poll
    expect(h.events).toHaveLength(1);
    expect(fake.log.polls).toHaveLength(5);
  });

  it('a held long-poll answering 304 within MIN_POLL_GAP does not loop hot', async () => {
    const h = client(polling);
    await h.tick(); // heads, then at once the long-poll, held
    fake.release(); // "held" for 0 ms
    await h.tick();
    expect(fake.log.polls).toHaveLength(2);
    await h.tick(MIN_POLL_GAP);
    expect(fake.log.polls).toHaveLength(3);
  });

  it('a server that ignores Prefer: wait gets the X-Poll-Interval pace, not a hot loop', async () => {
    fake.knobs.longPoll = false;
    const h = client(polling);
    await h.tick(); // heads, then at once a long-poll the server answers 304 without holding
    await h.tick(999);
    expect(fake.log.polls).toHaveLength(2);
    await h.tick(1);
    expect(fake.log.polls).toHaveLength(3);
  });

  it.each([429, 503])('waits Retry-After seconds after %i, jittered up to 1.5x (random 0.5: 1.25x)', async (status) => {
    const h = client({ ...polling, longPoll: 0 });
    await h.tick();
    fake.knobs.pollQueue.push({ status, headers: { 'Retry-After': '7' } });
    await h.tick(1000);
    expect(h.c.state).toBe('connecting');
    expect(h.errors.map((e) => [e.code, e.status])).toEqual([['HTTP', status]]);
    await h.tick(8749);
    expect(fake.log.polls).toHaveLength(2);
    await h.tick(1);
    expect(fake.log.polls).toHaveLength(3);
    expect(h.c.state).toBe('polling');
  });

  it('understands Retry-After as an HTTP-date (RFC 9110 §10.2.3)', async () => {
    const h = client({ ...polling, longPoll: 0 });
    await h.tick();
    const at = new Date(h.clock.now() + 1000 + 20_000).toUTCString();
    fake.knobs.pollQueue.push({ status: 503, headers: { 'Retry-After': at } });
    await h.tick(1000);
    await h.tick(24_000);
    expect(fake.log.polls).toHaveLength(2);
    await h.tick(1000);
    expect(fake.log.polls).toHaveLength(3);
  });

  it('backs off with jitter on 429 without Retry-After and on network errors, reporting each', async () => {
    const h = client({ ...polling, longPoll: 0 });
    await h.tick();
    fake.knobs.pollQueue.push({ status: 429 }, 'network', 'network');
    await h.tick(1000); // 429: backoff n=0 → 500
    await h.tick(500); // network: n=1 → 1000
    await h.tick(999);
    expect(fake.log.polls).toHaveLength(3);
    await h.tick(1); // network: n=2 → 2000
    await h.tick(1999);
    expect(fake.log.polls).toHaveLength(4);
    await h.tick(1);
    expect(fake.log.polls).toHaveLength(5);
    expect(h.c.state).toBe('polling');
    expect(h.errors.map((e) => [e.code, e.status])).toEqual([['HTTP', 429], ['NETWORK', undefined], ['NETWORK', undefined]]);
    expect(h.errors[1]!.cause).toBeInstanceOf(Error);
  });

  it('on 401 calls token() again and retries at once', async () => {
    let n = 0;
    fake.knobs.accept = (t) => t === 'fresh';
    const h = client({ ...polling, token: () => (n++ ? 'fresh' : 'stale') });
    await h.tick();
    expect(fake.log.polls.map((p) => p.auth).slice(0, 2)).toEqual(['Bearer stale', 'Bearer fresh']);
    expect(h.c.state).toBe('polling');
  });

  it('stops with TOKEN_REJECTED when 401 repeats after the refresh', async () => {
    fake.knobs.accept = () => false;
    const h = client(polling);
    await h.tick();
    expect(h.c.state).toBe('stopped');
    expect(h.errors.map((e) => [e.code, e.status])).toEqual([['TOKEN_REJECTED', 401]]);
    await h.tick(600_000);
    expect(fake.log.polls).toHaveLength(2);
  });

  it.each([
    [403, 'FORBIDDEN'],
    [400, 'BAD_REQUEST'],
  ])('stops on %i with %s', async (status, code) => {
    const h = client(polling);
    fake.knobs.pollQueue.push({ status, body: '{"error":"x","message":"x"}' });
    await h.tick();
    expect(h.c.state).toBe('stopped');
    expect(h.errors.map((e) => [e.code, e.status])).toEqual([[code, status]]);
    await h.tick(600_000);
    expect(fake.log.polls).toHaveLength(1);
  });

  it('reports a body that is not {"messages":[...]} as PROTOCOL and backs off', async () => {
    const h = client({ ...polling, longPoll: 0 });
    await h.tick();
    fake.knobs.pollQueue.push({ status: 200, body: '{"messages":{}}' }, { status: 200, body: 'nope' });
    await h.tick(1000);
    await h.tick(500);
    expect(h.errors.map((e) => [e.code, e.status])).toEqual([
      ['PROTOCOL', 200],
      ['PROTOCOL', 200],
    ]);
    await h.tick(1000);
    expect(h.c.state).toBe('polling');
  });

  it('aborts a long-poll that outlives its wait + pingGrace and polls again', async () => {
    const h = client({ ...polling, pingGrace: 5000 });
    await h.tick();
    expect(fake.log.polls).toHaveLength(2);
    await h.tick(25_000 + 5000 - 1);
    expect(h.c.state).toBe('polling');
    await h.tick(1);
    expect(h.c.state).toBe('connecting');
    expect(h.errors.map((e) => e.message)).toEqual(['NETWORK: poll']);
    await h.tick(500);
    expect(fake.log.polls).toHaveLength(3);
  });

  it('clamps longPoll to the 30 s PROTOCOL.md allows, at and past the limit', async () => {
    for (const [longPoll, prefer] of [
      [30, 'wait=30'],
      [31, 'wait=30'],
    ] as const) {
      const h = client({ ...polling, longPoll });
      await h.tick();
      await h.tick(1000);
      expect(fake.log.polls.at(-1)!.prefer).toBe(prefer);
      h.c.close();
    }
  });

  it('slows down while the page is hidden', async () => {
    fake.knobs.pollInterval = 2;
    const h = client({ ...polling, longPoll: 0 });
    doc.visibilityState = 'hidden';
    await h.tick();
    await h.tick(7999);
    expect(fake.log.polls).toHaveLength(1);
    await h.tick(1);
    expect(fake.log.polls).toHaveLength(2);
  });

  it('reconnect() cuts the wait short and polls at once', async () => {
    fake.knobs.pollInterval = 30;
    const h = client({ ...polling, longPoll: 0 });
    await h.tick();
    h.c.reconnect();
    await h.tick();
    expect(fake.log.polls).toHaveLength(2);
  });

  it('keeps held cursors when another channel still needs its head (no loss on a partial resume)', async () => {
    fake.publish('a', 1);
    fake.publish('a', 2);
    sessionStorage.setItem('tidings:cursor:http://tidings.test:a', 'a-1');
    const h = client({ ...polling, persist: true });
    await h.tick();
    expect(fake.log.polls[0]!.inm).toBeNull();
    await h.tick(1000);
    expect(fake.log.polls[1]!.inm).toBe('"a=a-1;b=a-0"');
    expect(h.events.map((e) => e.data)).toEqual([2]);
  });
});

describe('headerDelay', () => {
  it('reads delta-seconds and HTTP-dates, and nothing else', () => {
    expect(headerDelay('3', 0)).toBe(3000);
    expect(headerDelay('0.5', 0)).toBe(500);
    expect(headerDelay(new Date(10_000).toUTCString(), 4000)).toBe(6000);
    expect(headerDelay(new Date(1000).toUTCString(), 4000)).toBe(0);
    expect(headerDelay(null, 0)).toBeUndefined();
    expect(headerDelay('soon', 0)).toBeUndefined();
  });
});
