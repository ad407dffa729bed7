import mittImport from 'mitt';
import type { Ctx, Settings } from './context.js';
import { cursorStore } from './cursors.js';
import { TidingsError } from './errors.js';
import { CHANNEL, json } from './messages.js';
import { pollTransport, type PollTransport } from './transport/poll.js';
import { wsTransport, type WsTransport } from './transport/websocket.js';
import type { Client, ClientOptions, Clock, State, TidingsEvents, Transport } from './types.js';

// mitt's own types do not resolve under NodeNext (CJS-typed default export): declare the slice we use.
interface Emitter<E> {
  on<K extends keyof E>(type: K, handler: (e: E[K]) => void): void;
  off<K extends keyof E>(type: K, handler?: (e: E[K]) => void): void;
  emit<K extends keyof E>(type: K, e?: E[K]): void;
}
const mitt = mittImport as unknown as <E>() => Emitter<E>;

/** Internal state: one union, one transition point (`set`). */
type Phase =
  | { state: 'connecting' | 'offline'; transport: null }
  | { state: 'open'; transport: 'websocket' }
  | { state: 'polling'; transport: 'polling' }
  | { state: 'stopped'; transport: null; error?: TidingsError };

const CONNECTING: Phase = { state: 'connecting', transport: null };
const OFFLINE: Phase = { state: 'offline', transport: null };

const defaultClock: Clock = {
  now: () => Date.now(),
  setTimeout: (f, ms) => setTimeout(f, ms),
  clearTimeout: (id) => clearTimeout(id as ReturnType<typeof setTimeout>),
};

/** sessionStorage, guarded: it throws in sandboxed iframes and with storage disabled. */
function session(key: string, value?: string | null): string | null | undefined {
  try {
    const s = sessionStorage;
    if (value === undefined) return s.getItem(key);
    value === null ? s.removeItem(key) : s.setItem(key, value);
  } catch {
    /* storage unavailable: behave as a fresh session */
  }
}

const bad = (what: string) => new TidingsError('BAD_OPTIONS', what);
const URL_HINT = 'url must be an absolute http(s):// or ws(s):// URL';

function settings(o: ClientOptions): Settings {
  let u: URL;
  try {
    u = new URL(o.url);
  } catch {
    throw bad(URL_HINT);
  }
  if (!/^(http|ws)s?:$/.test(u.protocol)) throw bad(URL_HINT);
  const base = u.href.replace(/\/+$/, '').replace(/^ws/, 'http');
  const { channels } = o;
  if (!Array.isArray(channels) || !channels.length || new Set(channels).size < channels.length || !channels.every((c) => CHANNEL.test(c)))
    throw bad('channels must be a non-empty list of distinct names matching [A-Za-z0-9:_.-]{1,128}');
  if (typeof o.token !== 'string' && typeof o.token !== 'function') throw bad('token must be a string or a function returning one');
  const b = o.backoff ?? {};
  return {
    httpUrl: base,
    wsUrl: base.replace(/^http/, 'ws') + '/v1/ws',
    channels: [...channels],
    base: b.base ?? 1000,
    cap: b.cap ?? 30_000,
    resetAfter: b.resetAfter ?? 10_000,
    grace: o.pingGrace ?? 10_000,
    connectTimeout: o.connectTimeout ?? 10_000,
    // PROTOCOL.md: Prefer: wait=N with N ≤ 30.
    longPoll: Math.max(0, Math.min(30, o.longPoll ?? 25)),
    probeFirst: o.probe?.first ?? 30_000,
    probeMax: o.probe?.max ?? 300_000,
  };
}

/**
 * Creates a client and starts connecting. Throws TidingsError BAD_OPTIONS on
 * an unusable url, channel list or token.
 */
export function createClient(options: ClientOptions): Client {
  const s = settings(options);
  const clock = options.clock ?? defaultClock;
  const mode = options.transport ?? 'auto';
  const K = options.fallbackAfter ?? 2;
  const WS = options.WebSocket ?? (globalThis as { WebSocket?: typeof WebSocket }).WebSocket;
  const em = mitt<TidingsEvents>();
  const wsKey = 'tidings:ws:' + s.httpUrl;
  const cursorKey = 'tidings:cursors:' + s.httpUrl;
  // In a page globalThis is the window (online/offline/focus fire there); elsewhere it has no addEventListener.
  const win = globalThis as Partial<EventTarget>;
  const doc = (globalThis as { document?: Document }).document;
  const offline = () => (globalThis as { navigator?: Navigator }).navigator?.onLine === false;

  let phase: Phase = CONNECTING;
  let live: Transport = 'websocket'; // the transport that should be delivering
  let fails = 0; // consecutive WebSocket attempts without welcome
  let ws: WsTransport | undefined;
  let poll: PollTransport | undefined;
  let tokenP: Promise<string> | undefined;
  const timers = new Set<unknown>();
  let waiters: (() => void)[] = [];

  /** The one transition point: emits `state` once per change. */
  const set = (next: Phase) => {
    if (phase.state === 'stopped') return;
    if (offline() && next.state !== 'stopped') next = OFFLINE;
    if (next.state === phase.state) return;
    phase = next;
    em.emit('state', next.state);
  };

  const shut = (p: Phase & { state: 'stopped' }) => {
    set(p);
    ws?.close();
    poll?.stop();
    timers.forEach(clock.clearTimeout);
    for (const [t, n, f] of events) t?.removeEventListener?.(n, f);
  };

  const startPolling = () => {
    live = 'polling';
    ws?.probe(true);
    poll = pollTransport(ctx);
  };

  const stored = options.persist ? session(cursorKey) : undefined;
  const ctx: Ctx = {
    s,
    clock,
    random: options.random ?? Math.random,
    WS,
    fetch: options.fetch ?? ((input, init) => fetch(input, init)),
    sleep: (ms) =>
      new Promise((resolve) => {
        if (phase.state === 'stopped') return; // never resolves: nothing runs after close()
        const id = clock.setTimeout(() => {
          timers.delete(id);
          resolve();
        }, ms);
        timers.add(id);
      }),
    online: () => (offline() ? new Promise((r) => waiters.push(r)) : Promise.resolve()),
    token: () =>
      (tokenP ??= Promise.resolve()
        .then(() => (typeof options.token === 'string' ? options.token : options.token()))
        .then((t) => {
          if (typeof t !== 'string' || !t) throw 0;
          return t;
        })
        .catch((e) => {
          tokenP = undefined;
          throw new TidingsError('TOKEN_FETCH_FAILED', e?.message);
        })),
    stale: () => (tokenP = undefined),
    cursors: cursorStore(s.channels, json(stored) || {}, options.persist ? (c) => session(cursorKey, JSON.stringify(c)) : undefined),
    deliver(m) {
      if (phase.state === 'stopped') return;
      if (m.type === 'welcome') ctx.cursors.heads(m.channels);
      else if ((m.type === 'event' || m.type === 'reset') && ctx.cursors.take(m))
        m.type === 'event'
          ? em.emit('event', { channel: m.channel, cursor: m.cursor, data: m.data })
          : em.emit('reset', { channel: m.channel, cursor: m.cursor });
    },
    up(via) {
      if (via === 'websocket') {
        fails = 0;
        if (live === 'polling') {
          // A probe reached welcome: only now stop polling. Dedup absorbs the overlap.
          poll?.stop();
          poll = undefined;
          session(wsKey, null);
        }
        live = via;
        ws?.probe(false);
        set({ state: 'open', transport: via });
      } else if (live === via) set({ state: 'polling', transport: via });
    },
    down(via) {
      if (via === live) set(CONNECTING);
    },
    failed() {
      // Being offline says nothing about WebSocket support; after close() nothing starts.
      if (offline() || phase.state === 'stopped') return;
      if (++fails >= K && mode === 'auto' && live === 'websocket') {
        // Remember for this session (as Phoenix does) so a reload starts on polling and probes.
        session(wsKey, '1');
        startPolling();
      }
    },
    error: (e) => phase.state !== 'stopped' && em.emit('error', e),
    fatal(e) {
      if (phase.state === 'stopped') return;
      shut({ state: 'stopped', transport: null, error: e });
      em.emit('error', e);
    },
    hidden: () => doc?.visibilityState === 'hidden',
  };

  const wake = () => {
    if (doc?.visibilityState !== 'hidden') ws?.check();
  };
  const events: [Partial<EventTarget> | undefined, string, () => void][] = [
    [
      win,
      'online',
      () => {
        // Browsers also fire `online` on a network change without a prior `offline`.
        if (phase.state === 'offline') set(CONNECTING);
        em.emit('online');
        const w = waiters;
        waiters = [];
        w.forEach((f) => f());
        wake();
      },
    ],
    [
      win,
      'offline',
      () => {
        set(OFFLINE);
        em.emit('offline');
        // The socket may linger silently (no close event); drop it, attempts wait for `online`.
        ws?.drop();
        poll?.now();
      },
    ],
    [win, 'focus', wake],
    [doc, 'visibilitychange', wake],
  ];
  for (const [t, n, f] of events) t?.addEventListener?.(n, f);

  set(CONNECTING);
  if (!WS || mode === 'polling') startPolling();
  else {
    // This session already saw WebSocket fail: start on polling, probe in the background.
    const failedBefore = mode === 'auto' && !!session(wsKey);
    ws = wsTransport(ctx, failedBefore);
    if (failedBefore) startPolling();
  }

  return {
    get state(): State {
      return phase.state;
    },
    get transport() {
      return phase.transport;
    },
    on: em.on,
    off: em.off,
    cursors: () => ctx.cursors.get(),
    reconnect() {
      if (phase.state === 'stopped') return;
      if (live === 'polling') poll?.now();
      else ws?.drop(true);
    },
    close: () => shut({ state: 'stopped', transport: null }),
  };
}
