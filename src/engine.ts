/**
 * The engine: carries out the policy's effects (src/policy.ts) with real
 * sockets, fetches, timers and storage, and turns what the transports report
 * into policy inputs. Everything it learns goes out through one narrow seam,
 * `sink.emit(event)`, so a layer can sit between an engine and the client
 * facade (cross-tab sharing runs one engine per browser profile and forwards
 * its events to every tab).
 */
import { cursorStore, parseTag, validator, type Pos } from './cursors.js';
import { TidingsError } from './errors.js';
import { headerDelay, json, parseFrame, toMessage, type ServerMessage } from './messages.js';
import { initial, next, type Effect, type Input, type PolicyConfig } from './policy.js';
import { fellBack, session } from './storage.js';
import { fetchToken, type TokenSource } from './token.js';
import type { State, Transport } from './types.js';
import ReconnectingWebSocket from './vendor/reconnecting-websocket.js';
import { watchdog } from './watchdog.js';

/** Subprotocol offered in the handshake (PROTOCOL.md). */
export const SUBPROTOCOL = 'tidings.v1';

/** Why the last connection or poll ended, and when the next attempt is due. */
export interface Disconnect {
  transport: Transport;
  /** WebSocket close code (1006: no close frame, a failed attempt or a drop by the watchdog). */
  code?: number;
  /** HTTP status of the failed poll (0: network error or timeout). */
  status?: number;
  reason: string;
  /** ms until the next attempt. */
  retryIn: number;
}

export type EngineEvent =
  | { type: 'event'; channel: string; cursor: string; data: unknown }
  | { type: 'reset'; channel: string; cursor: string }
  /** Head cursors taken for channels that had none (welcome, first poll). */
  | { type: 'heads'; cursors: Record<string, string> }
  /**
   * A delivery stream (a welcome, a poll answer) begins: its replay of each channel ends at `to`
   * (welcome heads, the poll's ETag). Cross-tab sharing tells from it when a channel is live.
   */
  | { type: 'stream'; to: Record<string, string> }
  | { type: 'state'; state: State; transport: Transport | null }
  | { type: 'error'; error: TidingsError }
  | (Disconnect & { type: 'disconnect' })
  | { type: 'online' }
  | { type: 'offline' };

export interface EngineSink {
  emit(e: EngineEvent): void;
}

export interface Engine {
  /** Connect (again, after stop() or a fatal error) from the cursors held. */
  start(): void;
  /** Close everything; state `stopped`. */
  stop(): void;
  /** Drop the transport in charge and connect again at once. */
  reconnect(): void;
  /**
   * The new channel set: a cursor (or null: keep the one held, else from now
   * on) per channel; channels left out are dropped. Re-subscribes (a new
   * `hello`, or a new poll) without losing anything on the others.
   */
  channels(next: Record<string, string | null>): void;
  /** Last cursor per channel. */
  cursors(): Record<string, string>;
  /** Whether this tab holds the connection (false in a tab that shares another tab's). */
  leader?(): boolean;
}

export interface EngineOptions extends Omit<PolicyConfig, 'random'>, TokenSource {
  httpUrl: string;
  wsUrl: string;
  connectTimeout: number;
  grace: number;
  WebSocket: typeof WebSocket | undefined;
  fetch: typeof fetch;
  random: () => number;
  debug?: ((...args: unknown[]) => void) | undefined;
  /**
   * The engine carries other tabs too (src/share): its own page being hidden says nothing of whether anyone
   * looks, so polls are not spaced out for it.
   */
  shared?: boolean;
}

/** The current socket: its delivery position, and since when it is welcomed (-1: not yet). */
type Attempt = { s: Pos; up: number; ping: number };

export function createEngine(o: EngineOptions, start: Pos, sink: EngineSink): Engine {
  const { clock } = o;
  const store = cursorStore(start);
  const cfg: PolicyConfig = { ...o, mode: o.WebSocket ? o.mode : 'polling' };
  const flag = fellBack(o.httpUrl);
  const emit = sink.emit;
  const g = globalThis as unknown as Window;
  const doc = g.document as Document | undefined;
  let ps = { ...initial(), phase: 'stopped' as State };
  let rws: ReconnectingWebSocket | undefined;
  let wsDelay = 0;
  let att: Attempt | undefined;
  let why: 'manual' | 'dropped' | undefined;
  let token = '';
  let tokenP: Promise<string> | undefined;
  let pollAc: AbortController | undefined;
  let pollTimer: unknown;
  let waiters: (() => void)[] = [];

  const dispatch = (i: Input) => {
    const r = next(ps, i, cfg);
    o.debug?.('tidings', i, r.effects);
    ps = r.state;
    r.effects.forEach(run);
  };
  const fail = (e: unknown, what: string, status?: number) =>
    emit({ type: 'error', error: e instanceof TidingsError ? e : new TidingsError(status ? 'HTTP' : 'NETWORK', what, 0, status, e) });

  function run(f: Effect) {
    switch (f.e) {
      case 'emit':
        if (f.ev.type === 'state' && f.ev.state === 'stopped') listen(false), wakeWaiters();
        return emit(f.ev);
      case 'ws':
        wsDelay = f.delay;
        return void (rws ??= socket());
      case 'wsNow':
        wsDelay = 0;
        if (!rws) return void (rws = socket());
        return drop('manual');
      case 'wsStop':
        rws?.close();
        rws = att = undefined;
        return dog.stop();
      case 'poll':
        if (pollAc) return;
        clock.clearTimeout(pollTimer);
        return void (pollTimer = clock.setTimeout(() => poll(f.long), f.delay));
      case 'pollStop': {
        clock.clearTimeout(pollTimer);
        const a = pollAc;
        pollAc = undefined;
        pdog.stop();
        return a?.abort();
      }
      case 'token':
        return void (tokenP = undefined);
      case 'remember':
        return void session(flag, f.on ? '1' : null);
    }
  }

  /** Let what waits for `online` go on: on `online`, and on stop (the stopped transports then make no request). */
  const wakeWaiters = () => {
    const w = waiters;
    waiters = [];
    w.forEach((f) => f());
  };
  /** Resolves once navigator.onLine is not false. */
  const online = () => ((g.navigator as Navigator | undefined)?.onLine === false ? new Promise<void>((r) => waiters.push(r)) : Promise.resolve());

  /** The cached token (src/token.ts: a `token()` that never settles fails after tokenTimeout). */
  const getToken = () =>
    (tokenP ??= fetchToken(o, Object.keys(store.cur)).catch((e) => {
      tokenP = undefined;
      throw e;
    }));

  /** The token for the channels as they are now: one asked for before the set grew is asked for again. */
  const currentToken = async () => {
    let p: Promise<string>;
    do token = await (p = getToken());
    while (p !== tokenP);
    return token;
  };

  const deliver = (s: Pos, m: ServerMessage) => {
    if ((m.type === 'event' || m.type === 'reset') && store.take(s, m))
      emit(m.type === 'event' ? { type: 'event', channel: m.channel, cursor: m.cursor, data: m.data } : { type: 'reset', channel: m.channel, cursor: m.cursor });
  };
  const heads = (s: Pos, h: Record<string, string>) => {
    const cursors = store.heads(s, h);
    if (Object.keys(cursors).length) emit({ type: 'heads', cursors });
  };

  // --- WebSocket: reconnecting-websocket's cycle, steered by the policy ---

  /** Drop the socket: 'manual' (no penalty) or 'dropped' (watchdog, bad frame: backs off). */
  function drop(w: 'manual' | 'dropped') {
    why = w;
    rws?.reconnect();
    why = undefined;
  }
  // Before welcome: connectTimeout. After: ping + pingGrace (PROTOCOL.md step 4).
  const dog = watchdog(clock, () => drop('dropped'));

  function socket() {
    const r = new ReconnectingWebSocket(
      async () => {
        await online();
        // Stopped meanwhile: no token request; RWS, closed, opens nothing.
        if (rws === r) await currentToken();
        return o.wsUrl;
      },
      SUBPROTOCOL,
      {
        // The attempt is timed from the moment the socket exists.
        create(url, p) {
          const ws = new o.WebSocket!(url, p);
          att = { s: {}, up: -1, ping: 0 };
          dog.arm(o.connectTimeout);
          return ws;
        },
        delay: () => wsDelay,
        setTimeout: clock.setTimeout,
        clearTimeout: clock.clearTimeout,
      },
    );
    r.onopen = () => {
      if (att) r.send(JSON.stringify({ type: 'hello', token, channels: (att.s = store.stream()) }, (_, v) => v ?? null));
    };
    r.onmessage = (e) => {
      const a = att;
      if (!a) return;
      const m = parseFrame(e.data);
      if (!m) return fail(new TidingsError('PROTOCOL', 'bad frame'), ''), drop('dropped');
      // Any message proves the connection alive (PROTOCOL.md step 4).
      if (a.up >= 0) dog.arm(a.ping + o.grace);
      if (m.type === 'welcome' && a.up < 0) {
        a.up = clock.now();
        a.ping = m.ping;
        dog.arm(m.ping + o.grace);
        emit({ type: 'stream', to: m.channels });
        heads(a.s, m.channels);
        dispatch({ t: 'welcome' });
      } else if (m.type === 'ping') r.send('{"type":"pong"}');
      else deliver(a.s, m);
    };
    r.onclose = (e) => {
      const a = att;
      att = undefined;
      dog.stop();
      if (a) dispatch({ t: 'closed', code: why === 'dropped' ? 1006 : e.code, reason: why === 'dropped' ? 'no answer' : e.reason, up: a.up < 0 ? -1 : clock.now() - a.up, why });
    };
    r.onerror = (e) => {
      att = undefined;
      dog.stop();
      fail(e, 'websocket');
      dispatch((e as TidingsError).code === 'TOKEN_FETCH_FAILED' ? { t: 'tokenFailed', via: 'websocket' } : { t: 'closed', code: 1006, reason: String(e), up: -1 });
    };
    return r;
  }

  // --- Polling: one request at a time (PROTOCOL.md "Polling") ---

  const pdog = watchdog(clock, () => pollAc?.abort());

  async function poll(long: boolean) {
    const ac = (pollAc = new AbortController());
    const s = store.stream();
    const tag = validator(s);
    const wait = long && tag ? o.longPoll : 0;
    const started = clock.now();
    let input: Input;
    try {
      await online();
      if (ac !== pollAc) return;
      const t = await currentToken();
      if (ac !== pollAc) return;
      const headers: Record<string, string> = { Authorization: 'Bearer ' + t };
      if (tag) headers['If-None-Match'] = tag;
      if (wait) headers.Prefer = 'wait=' + wait;
      // A long-poll the network silently dropped would hang: same grace as the ping watchdog, checked on wake too.
      pdog.arm(wait * 1000 + o.grace);
      // no-store: else the browser may add its own If-None-Match and hand back a cached 200.
      const r = await o.fetch(o.httpUrl + '/v1/poll?channels=' + Object.keys(s).join(','), { headers, signal: ac.signal, cache: 'no-store' });
      const status = r.status;
      const h = (n: string) => r.headers.get(n);
      let list: (ServerMessage | undefined)[] = [];
      if (status === 200) {
        // The heads-only answer may come with an empty body.
        const text = await r.text();
        const body = text ? json(text)?.messages : [];
        list = Array.isArray(body) ? body.map(toMessage) : [undefined];
        if (list.includes(undefined)) throw new TidingsError('PROTOCOL', 'poll body', 0, status);
      }
      if (ac !== pollAc) return;
      const to = parseTag(h('ETag'));
      // A 304 says where the stream is too (its ETag, RFC 9110 §15.4.5): live there. A tab of a shared group
      // waits for that to take its start, and a quiet channel may answer nothing else for a long time.
      if (status === 200 || status === 304) emit({ type: 'stream', to });
      for (const m of list) deliver(s, m!);
      if (status === 200) heads(s, to);
      // 400, 401 and 403 are the policy's (fatal, or a token refresh).
      else if (status !== 304 && ![400, 401, 403].includes(status)) fail(undefined, 'poll', status);
      input = {
        t: 'poll',
        status,
        took: clock.now() - started,
        long: !!wait,
        applied: /wait/.test(h('Preference-Applied') ?? ''),
        interval: headerDelay(h('X-Poll-Interval'), 0),
        retryAfter: headerDelay(h('Retry-After'), clock.now()),
        hidden: !o.shared && hidden(),
      };
    } catch (e) {
      if (ac !== pollAc) return; // stopped on purpose
      fail(ac.signal.aborted ? Error('timeout') : e, 'poll');
      input = (e as TidingsError).code === 'TOKEN_FETCH_FAILED' ? { t: 'tokenFailed', via: 'polling' } : { t: 'poll', status: 0, took: 0, long: !!wait };
    } finally {
      if (ac === pollAc) {
        pollAc = undefined;
        pdog.stop();
      }
    }
    dispatch(input);
  }

  // --- Page events ---

  const hidden = () => doc?.visibilityState === 'hidden';
  const wake = () => {
    if (!hidden()) dog.check(), pdog.check();
  };
  const events: [EventTarget | undefined, string, () => void][] = [
    [
      g,
      'online',
      () => {
        wakeWaiters();
        emit({ type: 'online' });
        dispatch({ t: 'online' });
        wake();
      },
    ],
    [
      g,
      'offline',
      () => {
        emit({ type: 'offline' });
        dispatch({ t: 'offline' });
      },
    ],
    [g, 'focus', wake],
    [
      doc,
      'visibilitychange',
      () => {
        if (!hidden()) dispatch({ t: 'visible' }), wake();
      },
    ],
  ];
  const listen = (on: boolean) => {
    for (const [t, n, f] of events) (on ? t?.addEventListener : t?.removeEventListener)?.call(t, n, f);
  };

  return {
    start() {
      if (ps.phase !== 'stopped') return;
      tokenP = undefined; // a start after TOKEN_REJECTED (a re-login) must ask for a fresh token
      listen(true);
      ps.offline = (g.navigator as Navigator | undefined)?.onLine === false;
      dispatch({ t: 'start', remembered: !!session(flag) });
    },
    stop: () => dispatch({ t: 'close' }),
    reconnect: () => dispatch({ t: 'reconnect' }),
    channels(want) {
      const cur = store.cur;
      // A token asked for fewer channels may not grant a new one: ask again, with the new list.
      for (const c in want) if (!(c in cur)) tokenP = undefined;
      for (const c in cur) if (!(c in want)) delete cur[c];
      for (const c in want) if (want[c] !== null || !(c in cur)) cur[c] = want[c] ?? undefined;
      if (ps.phase === 'stopped') return;
      // A probe socket carries the old channel list too: drop it; the policy re-subscribes the transport in charge.
      if (ps.via === 'polling' && att) drop('manual');
      dispatch({ t: 'reconnect' });
    },
    // JSON drops the channels without a cursor yet.
    cursors: () => JSON.parse(JSON.stringify(store.cur)),
  };
}
