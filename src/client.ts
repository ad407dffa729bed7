import { createEngine, type EngineEvent } from './engine.js';
import { TidingsError } from './errors.js';
import { CHANNEL, CURSOR } from './messages.js';
import { session } from './storage.js';
import type { Client, ClientOptions, State, TidingsEvents, Transport } from './types.js';
import mitt from './vendor/mitt.js';

const bad = (what: string) => new TidingsError('BAD_OPTIONS', what);
const URL_HINT = 'url must be an absolute http(s):// or ws(s):// URL';
const CHANNELS_HINT = 'channels must be a non-empty list of distinct names matching [A-Za-z0-9:_.-]{1,128}, or an object of them to a cursor or null';
const validCursor = (v: unknown): v is string => typeof v === 'string' && CURSOR.test(v);

const defaultClock = {
  now: () => Date.now(),
  setTimeout: (f: () => void, ms: number) => setTimeout(f, ms),
  clearTimeout: (id: unknown) => clearTimeout(id as ReturnType<typeof setTimeout>),
};

/**
 * Creates a client and starts connecting. Throws TidingsError BAD_OPTIONS on
 * an unusable url, channel list or token.
 *
 * Outside a browser page (no `document`: server-side rendering, Node) it
 * connects only at the first on(), ready(), subscribe() or start(): code that
 * merely creates a client while rendering on the server opens no connection
 * from the server process, and Node code that listens works unchanged.
 */
export function createClient<T = unknown>(options: ClientOptions): Client<T> {
  let u: URL;
  try {
    u = new URL(options.url);
  } catch {
    throw bad(URL_HINT);
  }
  if (!/^(http|ws)s?:$/.test(u.protocol)) throw bad(URL_HINT);
  const httpUrl = u.href.replace(/\/+$/, '').replace(/^ws/, 'http');
  const list = options.channels;
  const given: Record<string, string | null> = Array.isArray(list) ? {} : { ...list };
  if (Array.isArray(list)) for (const c of list) given[c] = c in given ? '' : null;
  const names = Object.keys(given);
  if (!list || typeof list !== 'object' || !names.length || names.some((c) => !CHANNEL.test(c) || !(given[c] === null || validCursor(given[c]))))
    throw bad(CHANNELS_HINT);
  const { token, persist, debug } = options;
  if (typeof token !== 'string' && typeof token !== 'function') throw bad('token must be a string or a function returning one');

  // One sessionStorage key per channel: widgets on one page with other channels never overwrite each other.
  const key = (c: string) => 'tidings:cursor:' + httpUrl + ':' + c;
  /** The cursor to start a channel from: the one given, else a valid persisted one, else from now on. */
  const from = (c: string, v?: string | null) => v ?? (persist ? session(key(c)) : null) ?? null;
  const keep = (c: string, v: string) => persist && session(key(c), v);
  const start: Record<string, string | undefined> = {};
  for (const c of names) {
    const v = from(c, given[c]);
    start[c] = validCursor(v) ? v : undefined;
  }

  const em = mitt<TidingsEvents<T>>();
  let state: State = 'stopped';
  let transport: Transport | null = null;
  let lastError: TidingsError | undefined;
  let waiting: [() => void, (e: TidingsError) => void][] = [];
  // Outside a page: wait for a listener before connecting (see above).
  let lazy = !(globalThis as { document?: unknown }).document;

  const sink = {
    emit(e: EngineEvent) {
      // The payload is the engine's event without its `type`: { channel, cursor, data } for an event.
      const { type, ...p } = e as { type: EngineEvent['type'] } & Record<string, any>;
      if (type === 'heads') for (const c in p.cursors) keep(c, p.cursors[c]);
      else if (type === 'state') {
        state = p.state;
        transport = p.transport;
        const live = state === 'open' || state === 'polling';
        if (live || state === 'stopped') {
          const w = waiting;
          waiting = [];
          for (const [resolve, reject] of w) live ? resolve() : reject(lastError ?? new TidingsError('CLOSED'));
        }
        lastError = undefined;
        em.emit('state', state);
      } else {
        if (type === 'event' || type === 'reset') keep(p.channel, p.cursor);
        if (type === 'error') lastError = p.error;
        em.emit(type, (type === 'error' ? p.error : type[0] === 'o' ? undefined : p) as never);
      }
    },
  };

  const engine = createEngine(
    {
      httpUrl,
      wsUrl: httpUrl.replace(/^http/, 'ws') + '/v1/ws',
      token,
      mode: options.transport ?? 'auto',
      fallbackAfter: options.fallbackAfter ?? 2,
      base: options.backoff?.base ?? 1000,
      cap: options.backoff?.cap ?? 30_000,
      resetAfter: options.backoff?.resetAfter ?? 10_000,
      probeFirst: options.probe?.first ?? 30_000,
      probeMax: options.probe?.max ?? 300_000,
      // PROTOCOL.md: Prefer: wait=N with N ≤ 30.
      longPoll: Math.max(0, Math.min(30, options.longPoll ?? 25)),
      grace: options.pingGrace ?? 10_000,
      connectTimeout: options.connectTimeout ?? 10_000,
      tokenTimeout: options.tokenTimeout ?? 10_000,
      WebSocket: options.WebSocket ?? (globalThis as { WebSocket?: typeof WebSocket }).WebSocket,
      fetch: options.fetch ?? ((input, init) => fetch(input, init)),
      clock: options.clock ?? defaultClock,
      random: options.random ?? Math.random,
      debug: debug === true ? console.debug : debug || undefined,
    },
    start,
    sink,
  );

  const run = () => {
    lazy = false;
    engine.start();
  };
  const wake = () => lazy && run();
  const setChannels = (want: Record<string, string | null>) => {
    engine.channels(want);
    const none = !Object.keys(want).length;
    if (none) engine.stop();
    else if (idle && !lazy) run();
    idle = none;
  };
  const current = () => {
    const out: Record<string, null> = {};
    for (const c of client.channels()) out[c] = null;
    return out;
  };
  let channels = names;
  let idle = false; // stopped for want of channels

  const client: Client<T> = {
    get state() {
      return state;
    },
    get transport() {
      return transport;
    },
    on(type, handler) {
      em.on(type, handler);
      wake();
      return () => em.off(type, handler);
    },
    off: em.off,
    ready() {
      wake();
      return state === 'open' || state === 'polling'
        ? Promise.resolve()
        : state === 'stopped'
          ? Promise.reject(new TidingsError('CLOSED'))
          : new Promise((resolve, reject) => waiting.push([resolve, reject]));
    },
    subscribe(c, cursor) {
      if (!CHANNEL.test(c) || !(cursor == null || validCursor(cursor))) throw bad('subscribe(channel, cursor?) takes a channel name and a cursor or null');
      if (channels.includes(c) && cursor == null) return wake();
      channels = [...channels.filter((x) => x !== c), c];
      const v = from(c, cursor);
      setChannels({ ...current(), [c]: validCursor(v) ? v : null });
      wake();
    },
    unsubscribe(c) {
      if (!channels.includes(c)) return;
      channels = channels.filter((x) => x !== c);
      setChannels(current());
    },
    channels: () => channels.slice(),
    cursors: engine.cursors,
    reconnect: engine.reconnect,
    start: run,
    close() {
      lazy = idle = false;
      lastError = undefined;
      engine.stop();
    },
  };
  if (!lazy) run();
  return client;
}
