/**
 * The connection policy as one pure state machine: `next(state, input)`
 * returns the new state and the effects for the engine (src/engine.ts) to
 * carry out. No clock, socket, timer or storage in here: random comes in
 * through the config, time through the inputs. test/sdk/policy.test.ts
 * checks it as a table against PROTOCOL.md's close codes.
 *
 * Fallback to polling ("auto") needs evidence that WebSocket is what fails,
 * not the server: after `fallbackAfter` WebSocket attempts in a row ended
 * without `welcome`, one plain poll is sent to the same server. Only if that
 * poll succeeds is WebSocket tried once more at once, and only if that
 * attempt fails too does the client switch (like centrifuge-js, which keeps
 * the first transport that works). A server that is down fails the poll as
 * well, so an outage or a restart never moves the fleet to polling; attempts
 * dropped by reconnect(), a channel change or going offline, a 1012 drain,
 * a 1013 overload and a 4401 token refresh never count.
 */
import { backoff, probeDelay, restartDelay, retryAfter } from './backoff.js';
import type { EngineEvent } from './engine.js';
import { TidingsError, type ErrorCode } from './errors.js';
import type { State, Transport } from './types.js';

export interface PolicyConfig {
  mode: 'auto' | 'websocket' | 'polling';
  fallbackAfter: number;
  base: number;
  cap: number;
  resetAfter: number;
  probeFirst: number;
  probeMax: number;
  /** Long-poll seconds (0: plain polling). */
  longPoll: number;
  random: () => number;
}

export interface PolicyState {
  phase: State;
  /** The transport in charge of delivering. */
  via: Transport;
  /** WebSocket backoff exponent. */
  n: number;
  /** Poll failure exponent. */
  pn: number;
  /** WebSocket attempts in a row that ended without welcome (auto mode). */
  fails: number;
  /** Evidence check: 0 none, 1 a plain poll is out, 2 it succeeded and one more WebSocket attempt is out. */
  check: 0 | 1 | 2;
  /** Probes made since polling started. */
  probe: number;
  /** A fresh token was fetched after a 4401/401 and not yet confirmed. */
  tok: boolean;
  offline: boolean;
}

export type Input =
  | { t: 'start'; remembered: boolean }
  | { t: 'welcome' }
  /** A socket ended. up: ms it had been open after welcome, -1 if it never got one. why: we dropped it (manual: no penalty; dropped: watchdog or bad frame). */
  | { t: 'closed'; code: number; reason: string; up: number; why?: 'manual' | 'dropped' }
  | { t: 'tokenFailed'; via: Transport }
  /** A poll answered (status 0: network error, timeout or unreadable body). long: it asked Prefer: wait. */
  | { t: 'poll'; status: number; took: number; long: boolean; applied?: boolean; interval?: number; retryAfter?: number; hidden?: boolean }
  | { t: 'online' | 'offline' | 'visible' | 'reconnect' | 'close' };

export type Effect =
  /** Tell the application (through the engine's sink): state changes, errors, disconnect diagnostics. */
  | { e: 'emit'; ev: EngineEvent }
  /** The next WebSocket attempt waits `delay` (starts the socket loop if needed). */
  | { e: 'ws'; delay: number }
  /** Drop the socket (if any) and attempt at once. */
  | { e: 'wsNow' }
  | { e: 'wsStop' }
  /** Poll after `delay` unless one is in flight; `long`: may ask Prefer: wait. */
  | { e: 'poll'; delay: number; long: boolean }
  | { e: 'pollStop' }
  /** Forget the cached token. */
  | { e: 'token' }
  /** Remember for this tab (sessionStorage) that WebSocket fails here. */
  | { e: 'remember'; on: boolean }
  ;

/** Least time between the starts of two polls when the first ended in 304 (no hot loop on a server ignoring Prefer). */
export const MIN_POLL_GAP = 1000;
/** Delay between plain polls when the server sends no X-Poll-Interval, ms. */
export const DEFAULT_POLL_INTERVAL = 5000;
/** While the page is hidden, the delay between polls is max(X-Poll-Interval, usual delay) times this. */
export const HIDDEN_SLOWDOWN = 4;

export const initial = (offline = false): PolicyState => ({
  phase: 'connecting',
  via: 'websocket',
  n: 0,
  pn: 0,
  fails: 0,
  check: 0,
  probe: 0,
  tok: false,
  offline,
});

/** PROTOCOL.md close codes that stop the client, with the error they report. */
const STOP: Record<number, ErrorCode> = { 4400: 'BAD_REQUEST', 4403: 'FORBIDDEN' };
/** Close codes before welcome that say nothing against WebSocket: the server spoke it. */
const NOT_EVIDENCE = [1012, 1013, 4401];

export function next(s: PolicyState, i: Input, c: PolicyConfig): { state: PolicyState; effects: Effect[] } {
  if (s.phase === 'stopped' && i.t !== 'start') return { state: s, effects: [] };
  const st = { ...s };
  const fx: Effect[] = [];
  const set = (phase: State) => {
    if (st.offline && phase !== 'stopped') phase = 'offline';
    if (phase !== st.phase) emit({ type: 'state', state: (st.phase = phase), transport: phase === 'open' ? 'websocket' : phase === 'polling' ? 'polling' : null });
  };
  const emit = (ev: EngineEvent) => fx.push({ e: 'emit', ev });
  /** Stop; with `code`, a fatal error (reported first, so `state: stopped` listeners can read it). */
  const stop = (code?: ErrorCode, closeCode?: number, status?: number, reason?: string) => {
    if (code) emit({ type: 'error', error: new TidingsError(code, reason, closeCode, status) });
    fx.push({ e: 'wsStop' }, { e: 'pollStop' });
    set('stopped');
  };
  const probe = () => probeDelay(st.probe++, c.probeFirst, c.probeMax, c.random);
  const poll = (delay: number, long = false) => fx.push({ e: 'poll', delay, long });

  switch (i.t) {
    case 'start':
      Object.assign(st, initial(s.offline), { phase: 'stopped' });
      set('connecting');
      if (c.mode === 'polling' || (c.mode === 'auto' && i.remembered)) {
        st.via = 'polling';
        poll(0);
        if (c.mode === 'auto') fx.push({ e: 'ws', delay: probe() });
      } else fx.push({ e: 'ws', delay: 0 });
      break;

    case 'welcome':
      if (st.via === 'polling') fx.push({ e: 'pollStop' }, { e: 'remember', on: false });
      Object.assign(st, { via: 'websocket', fails: 0, check: 0, probe: 0, tok: false });
      set('open');
      break;

    case 'closed': {
      const { code, reason, up, why } = i;
      const live = st.via === 'websocket';
      if (up >= c.resetAfter) st.n = 0;
      if (STOP[code]) return done(stop(STOP[code], code, 0, reason));
      let delay: number | undefined;
      if (code === 4401 && why !== 'manual') {
        if (st.tok) return done(stop('TOKEN_REJECTED', code, 0, reason));
        st.tok = true;
        fx.push({ e: 'token' });
        delay = 0;
      }
      if (live && c.mode === 'auto' && up < 0 && why !== 'manual' && !NOT_EVIDENCE.includes(code)) {
        if (st.check === 2) {
          // WebSocket failed right after a poll to the same server succeeded.
          Object.assign(st, { via: 'polling', check: 0, fails: 0, probe: 0 });
          fx.push({ e: 'remember', on: true });
          poll(0);
        } else if (++st.fails >= c.fallbackAfter && !st.check) {
          st.check = 1;
          poll(0);
        }
      }
      if (st.via === 'polling') delay ??= probe();
      else {
        delay ??= why === 'manual' ? 0 : (code === 1012 ? restartDelay(reason, c.random) : undefined) ?? backoff(st.n++, c.base, c.cap, c.random);
        set('connecting');
      }
      fx.push({ e: 'ws', delay });
      if (live) emit({ type: 'disconnect', transport: 'websocket', code, reason, retryIn: delay });
      break;
    }

    case 'tokenFailed':
      if (i.via === 'websocket') fx.push({ e: 'ws', delay: st.via === 'polling' ? probe() : backoff(st.n++, c.base, c.cap, c.random) });
      else if (st.via === 'polling') pollFailed(0);
      else st.check = 0;
      break;

    case 'poll': {
      const { status } = i;
      const ok = status === 200 || status === 304;
      if (st.via === 'websocket') {
        // An evidence check (see the top of this file); what it delivered counts anyway.
        if (st.check === 1 && ok) {
          st.check = 2;
          fx.push({ e: 'wsNow' });
        } else st.check = 0;
        break;
      }
      if (ok) {
        st.pn = 0;
        st.tok = false;
        const interval = i.interval ?? DEFAULT_POLL_INTERVAL;
        // A held long-poll, or a plain one before the first long-poll, may be followed at once.
        let delay = i.applied || (!i.long && c.longPoll) ? 0 : interval;
        if (status === 304) delay = Math.max(delay, MIN_POLL_GAP - i.took);
        // A hidden page needs no live badge: no long-poll back to back, plain polls spaced out.
        if (i.hidden) delay = Math.max(delay, interval) * HIDDEN_SLOWDOWN;
        set('polling');
        poll(delay, true);
      } else if (status === 401) {
        if (st.tok) return done(stop('TOKEN_REJECTED', 0, status));
        st.tok = true;
        fx.push({ e: 'token' });
        poll(0);
      } else if (status === 400 || status === 403) stop(status === 403 ? 'FORBIDDEN' : 'BAD_REQUEST', 0, status);
      else pollFailed(status, (status === 429 || status === 503) && i.retryAfter !== undefined ? retryAfter(i.retryAfter, c.random) : undefined);
      break;
    }

    case 'online':
      st.offline = false;
      if (st.phase === 'offline') {
        set('connecting');
        st.via === 'polling' ? poll(0) : fx.push({ e: 'wsNow' });
      }
      break;

    case 'offline':
      st.offline = true;
      set('offline');
      // The socket may linger silently (no close event): drop it; attempts wait for `online`.
      fx.push({ e: 'pollStop' });
      if (st.via === 'websocket') fx.push({ e: 'wsNow' });
      break;

    case 'visible':
      // Cut a hidden-page slow-down short (a poll in flight is left alone).
      if (st.via === 'polling' && st.phase !== 'offline') poll(0, true);
      break;

    case 'reconnect':
      if (st.via === 'polling') fx.push({ e: 'pollStop' }), poll(0);
      else fx.push({ e: 'wsNow' });
      break;

    case 'close':
      stop();
  }
  return done();

  function pollFailed(status: number, delay = backoff(st.pn++, c.base, c.cap, c.random)) {
    set('connecting');
    poll(delay);
    emit({ type: 'disconnect', transport: 'polling', status, reason: '', retryIn: delay });
  }
  function done(_?: unknown) {
    return { state: st, effects: fx };
  }
}
