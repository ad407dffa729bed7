/**
 * The policy (src/policy.ts) as a table: PROTOCOL.md's close codes, before
 * and after `welcome`, on each transport in charge; poll statuses; the
 * fallback evidence rule; page events. Pure: no clock, no socket.
 */
import { describe, expect, it } from 'vitest';
import { initial, next, type Effect, type Input, type PolicyConfig, type PolicyState } from '../../src/policy.js';

const cfg: PolicyConfig = { mode: 'auto', fallbackAfter: 2, base: 1000, cap: 30_000, resetAfter: 10_000, probeFirst: 30_000, probeMax: 300_000, longPoll: 25, random: () => 0.5 };
const open: PolicyState = { ...initial(), phase: 'open' };
const connecting: PolicyState = { ...initial(), phase: 'connecting' };
const polling: PolicyState = { ...initial(), phase: 'polling', via: 'polling' };
const closed = (code: number, up = 20_000, reason = ''): Input => ({ t: 'closed', code, reason, up });
const run = (s: PolicyState, ...inputs: Input[]) => {
  let st = s;
  const effects: Effect[] = [];
  for (const i of inputs) {
    const r = next(st, i, cfg);
    st = r.state;
    effects.push(...r.effects);
  }
  return { state: st, effects };
};
const kinds = (fx: Effect[]) => fx.map((f) => (f.e === 'emit' ? f.ev.type : f.e));
/** The events the policy hands to the application, by type. */
const emitted = (fx: Effect[], type: string) => fx.flatMap((f) => (f.e === 'emit' && f.ev.type === type ? [f.ev as Record<string, unknown>] : []));
const fatal = (fx: Effect[]) => emitted(fx, 'error')[0]?.error;
const wsDelay = (fx: Effect[]) => (fx.find((f) => f.e === 'ws') as { delay: number } | undefined)?.delay;

describe('policy: PROTOCOL.md close codes on a live socket (after welcome)', () => {
  // [code, reason, what the client does, next WebSocket delay with random 0.5 and n = 0]
  it.each([
    [1000, '', 'backoff', 500],
    [1002, '', 'backoff', 500],
    [1006, '', 'backoff', 500],
    [1007, '', 'backoff', 500],
    [1009, '', 'backoff', 500],
    [1011, '', 'backoff', 500],
    [1012, '4000', 'restart window', 2000],
    [1012, 'soon', 'backoff (window not a number)', 500],
    [1013, '', 'backoff', 500],
    [4401, 'token', 'fresh token, at once', 0],
    [4408, '', 'backoff', 500],
    [4999, '', 'backoff', 500],
  ])('%i %j → %s', (code, reason, _, delay) => {
    const { state, effects } = run(open, closed(code, 20_000, reason));
    expect(state.phase).toBe('connecting');
    expect(wsDelay(effects)).toBe(delay);
    expect(kinds(effects)).toContain('disconnect');
    expect(kinds(effects).includes('token')).toBe(code === 4401);
    expect(kinds(effects)).not.toContain('poll');
  });

  it.each([
    [4400, 'BAD_REQUEST'],
    [4403, 'FORBIDDEN'],
  ])('%i → stop with %s', (code, err) => {
    const { state, effects } = run(open, closed(code));
    expect(state.phase).toBe('stopped');
    expect(fatal(effects)).toMatchObject({ code: err, closeCode: code });
    expect(kinds(effects)).toEqual(['error', 'wsStop', 'pollStop', 'state']);
  });

  it('4401 twice without a welcome between: stop with TOKEN_REJECTED', () => {
    const { state, effects } = run(open, closed(4401), closed(4401, -1));
    expect(state.phase).toBe('stopped');
    expect(fatal(effects)).toMatchObject({ code: 'TOKEN_REJECTED', closeCode: 4401 });
  });

  it('4401, welcome, 4401 again: a fresh token again (the welcome confirmed the first)', () => {
    const { state } = run(open, closed(4401), { t: 'welcome' }, closed(4401));
    expect(state.phase).toBe('connecting');
  });

  it('backoff grows per failure and resets after a connection stayed up resetAfter', () => {
    const r = run(open, closed(1011, 0), closed(1006, -1), closed(1006, -1));
    expect(r.state.n).toBe(3);
    expect(wsDelay(run(r.state, { t: 'welcome' }, closed(1011, 10_000)).effects)).toBe(500);
    expect(wsDelay(run(r.state, { t: 'welcome' }, closed(1011, 9_999)).effects)).toBe(4000);
  });

  it('after stop nothing but start is heard', () => {
    const stopped = run(open, { t: 'close' }).state;
    for (const i of [closed(1011), { t: 'welcome' }, { t: 'online' }, { t: 'reconnect' }] as Input[]) expect(run(stopped, i).effects).toEqual([]);
    expect(run(stopped, { t: 'start', remembered: false }).state.phase).toBe('connecting');
  });
});

describe('policy: fallback only on evidence that WebSocket is what fails', () => {
  const refused = closed(1006, -1);

  it('fallbackAfter failed attempts send one plain check poll; WebSocket keeps retrying meanwhile', () => {
    const r = run(connecting, refused, refused);
    expect(r.state.via).toBe('websocket');
    expect(r.state.check).toBe(1);
    expect(r.effects.filter((f) => f.e === 'poll')).toEqual([{ e: 'poll', delay: 0, long: false }]);
    expect(r.effects.filter((f) => f.e === 'ws')).toHaveLength(2);
  });

  it('the server is down (check poll fails too): stay on WebSocket, whatever the number of failures', () => {
    let s = connecting;
    for (let k = 0; k < 50; k++) s = run(s, refused, { t: 'poll', status: 0, took: 0, long: false }).state;
    expect(s.via).toBe('websocket');
    expect(s.phase).toBe('connecting');
  });

  it.each([502, 503, 404])('a check poll answering %i is no evidence either', (status) => {
    const r = run(connecting, refused, refused, { t: 'poll', status, took: 0, long: false }, refused);
    expect(r.state.via).toBe('websocket');
  });

  it('check poll succeeds → one more attempt at once; it succeeds → stays on WebSocket (server was just back)', () => {
    const r = run(connecting, refused, refused, { t: 'poll', status: 200, took: 0, long: false });
    expect(r.effects.at(-1)).toEqual({ e: 'wsNow' });
    const back = run(r.state, { t: 'welcome' });
    expect(back.state).toMatchObject({ via: 'websocket', phase: 'open', fails: 0, check: 0 });
  });

  it('check poll succeeds and WebSocket fails right after: fall back, remember, poll, probe', () => {
    const r = run(connecting, refused, refused, { t: 'poll', status: 304, took: 0, long: false }, refused);
    expect(r.state.via).toBe('polling');
    const last = r.effects.slice(r.effects.findIndex((f) => f.e === 'wsNow') + 1);
    expect(last).toEqual([{ e: 'remember', on: true }, { e: 'poll', delay: 0, long: false }, { e: 'ws', delay: 22_500 }, { e: 'emit', ev: { type: 'disconnect', transport: 'websocket', code: 1006, reason: '', retryIn: 22_500 } }]);
  });

  it.each([
    ['a 1012 drain before welcome', closed(1012, -1, '1000')],
    ['a 1013 overload before welcome', closed(1013, -1)],
    ['a 4401 before welcome', closed(4401, -1)],
    ['an attempt dropped by reconnect()', { t: 'closed', code: 1000, reason: '', up: -1, why: 'manual' } as Input],
    ['a socket that was live', closed(1006, 20_000)],
  ])('%s never counts', (_, i) => {
    const r = run(connecting, i, i, i, i);
    expect(r.state.fails).toBe(0);
    expect(kinds(r.effects)).not.toContain('poll');
  });

  it('a connect timeout (dropped before welcome) counts', () => {
    const t: Input = { t: 'closed', code: 1006, reason: 'no answer', up: -1, why: 'dropped' };
    expect(run(connecting, t, t).state.check).toBe(1);
  });

  it("reconnect() on WebSocket drops and retries at once, without counting; transport: 'websocket' never checks", () => {
    expect(run(connecting, { t: 'reconnect' }).effects).toEqual([{ e: 'wsNow' }]);
    const ws = next(connecting, refused, { ...cfg, mode: 'websocket' });
    expect(next(ws.state, refused, { ...cfg, mode: 'websocket' }).effects.map((f) => f.e)).not.toContain('poll');
  });

  it('a start remembered by sessionStorage polls first and probes; a welcome forgets it', () => {
    const r = run({ ...initial(), phase: 'stopped' }, { t: 'start', remembered: true });
    expect(r.state.via).toBe('polling');
    expect(kinds(r.effects)).toEqual(['state', 'poll', 'ws']);
    expect(kinds(run(r.state, { t: 'welcome' }).effects)).toEqual(['pollStop', 'remember', 'state']);
  });
});

describe('policy: polling', () => {
  const poll = (status: number, more: Partial<Extract<Input, { t: 'poll' }>> = {}): Input => ({ t: 'poll', status, took: 0, long: true, interval: 5000, ...more });
  const pollDelay = (fx: Effect[]) => (fx.find((f) => f.e === 'poll') as { delay: number } | undefined)?.delay;

  it.each([
    ['200 after a long-poll the server held', poll(200, { applied: true }), 0],
    ['304 after a long-poll the server held (and took its time)', poll(304, { applied: true, took: 25_000 }), 0],
    ['304 from a held long-poll that came back at once: MIN_POLL_GAP', poll(304, { applied: true, took: 200 }), 800],
    ['200 from a plain poll (first or after a failure): long-poll at once', poll(200, { long: false }), 0],
    ['200 when the server ignored Prefer: X-Poll-Interval', poll(200), 5000],
  ])('%s → next poll in the right time', (_, i, d) => {
    const r = run(polling, i);
    expect(r.state.phase).toBe('polling');
    expect(pollDelay(r.effects)).toBe(d);
  });

  it.each([
    [429, 0, 1250],
    [503, 0, 1250],
    [503, 4000, 5000],
  ])('%i with Retry-After %i ms waits at least 1 s, jittered up to 1.5x', (status, ra, d) => {
    expect(pollDelay(run(polling, poll(status, { retryAfter: ra })).effects)).toBe(d);
  });

  it.each([0, 404, 500, 502, 429])('%i backs off with jitter and reports down', (status) => {
    const r = run(polling, poll(status));
    expect(r.state.phase).toBe('connecting');
    expect(pollDelay(r.effects)).toBe(500);
    expect(emitted(r.effects, 'disconnect')[0]).toMatchObject({ transport: 'polling', status, retryIn: 500 });
  });

  it.each([
    [400, 'BAD_REQUEST'],
    [403, 'FORBIDDEN'],
  ])('%i stops with %s', (status, code) => {
    const r = run(polling, poll(status));
    expect(r.state.phase).toBe('stopped');
    expect(fatal(r.effects)).toMatchObject({ code, status });
  });

  it('401: a fresh token and a poll at once; 401 again: TOKEN_REJECTED', () => {
    const r = run(polling, poll(401));
    expect(kinds(r.effects)).toEqual(['token', 'poll']);
    expect(fatal(run(r.state, poll(401)).effects)).toMatchObject({ code: 'TOKEN_REJECTED', status: 401 });
  });

  it('hidden: polls spaced out x4; visible: polls at once', () => {
    expect(pollDelay(run(polling, poll(200, { hidden: true })).effects)).toBe(20_000);
    expect(run(polling, { t: 'visible' }).effects).toEqual([{ e: 'poll', delay: 0, long: true }]);
  });

  it('offline stops polling; online polls at once', () => {
    const off = run(polling, { t: 'offline' });
    expect(off.state.phase).toBe('offline');
    expect(kinds(off.effects)).toEqual(['state', 'pollStop']);
    expect(kinds(run(off.state, { t: 'online' }).effects)).toEqual(['state', 'poll']);
  });

  it('a failed probe waits the next probe delay, and changes nothing else', () => {
    const r = run(polling, closed(1006, -1));
    expect(r.effects).toEqual([{ e: 'ws', delay: 22_500 }]);
    expect(r.state.phase).toBe('polling');
  });
});
