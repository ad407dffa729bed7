import type { Disconnect } from './engine.js';
import type { TidingsError } from './errors.js';

export type { Disconnect };

/** Public connection state. `state` is emitted once per change. */
export type State = 'connecting' | 'open' | 'polling' | 'offline' | 'stopped';

/** The transport currently delivering messages, or null while none is. */
export type Transport = 'websocket' | 'polling';

/** Timers and time, injectable so tests drive them with a fake clock. */
export interface Clock {
  /** Wall-clock ms (Date.now): unlike a monotonic clock it advances while a laptop sleeps. */
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
}

/** A channel's event, as received on either transport. `T` is the type the application declares for `data`. */
export interface EventMessage<T = unknown> {
  channel: string;
  cursor: string;
  data: T;
  /**
   * True in exactly one tab of a group sharing a connection (`share`), the one
   * that should show a desktop notification for this event; always true
   * without sharing.
   */
  first: boolean;
}

/** History gap on `channel`: reload its state out of band, then carry on from `cursor`. */
export interface ResetMessage {
  channel: string;
  cursor: string;
}

/** Everything `client.on()` accepts, with its payload type. */
export type TidingsEvents<T = unknown> = {
  event: EventMessage<T>;
  reset: ResetMessage;
  state: State;
  error: TidingsError;
  /** A transport stopped delivering: why (close code or HTTP status, reason) and when the next attempt is due. */
  disconnect: Disconnect;
  /** `navigator.onLine` went false. */
  offline: undefined;
  /** `navigator.onLine` went true again. */
  online: undefined;
};

export interface BackoffOptions {
  /** First reconnect delay bound, ms. @default 1000 */
  base?: number;
  /** Largest reconnect delay bound, ms. @default 30000 */
  cap?: number;
  /** A connection that stayed open this long (ms) resets the backoff to `base`. @default 10000 */
  resetAfter?: number;
}

export interface ProbeOptions {
  /** Nominal delay before the first WebSocket probe while polling, ms. @default 30000 */
  first?: number;
  /** Largest nominal delay between probes (doubling from `first`), ms. @default 300000 */
  max?: number;
}

export interface ClientOptions {
  /** Server base URL (`https://…` or `http://…`; `ws(s)://` is derived from it). */
  url: string;
  /**
   * Subscriber token, or a function returning one; called again after a 4401/401, and when the
   * channel set grows. It gets the channels the token must grant: with `share`, the leader tab
   * asks for the union of its group's channels (see docs/sdk.md, "Tabs share one connection").
   */
  token: string | ((ctx: { channels: string[] }) => string | Promise<string>);
  /**
   * Channels to subscribe to (PROTOCOL.md: `^[A-Za-z0-9:_.\-]{1,128}$`): a list (from now on), or
   * channel → cursor to start after (`null`: from now on).
   */
  channels: string[] | Record<string, string | null>;
  /** Which transport to use; `auto` starts on WebSocket and falls back to polling. @default 'auto' */
  transport?: 'auto' | 'websocket' | 'polling';
  /** Reconnect backoff (full jitter). */
  backoff?: BackoffOptions;
  /** Silence tolerated beyond the server's `ping` interval before the socket is declared dead, ms. @default 10000 */
  pingGrace?: number;
  /** Time from opening a socket to its `welcome`, ms; past it the attempt counts as failed. @default 10000 */
  connectTimeout?: number;
  /** Time allowed to the `token` function, ms; past it the attempt fails with TOKEN_FETCH_FAILED and is retried. @default 10000 */
  tokenTimeout?: number;
  /**
   * WebSocket attempts in a row without `welcome` before `auto` checks with one plain poll whether
   * HTTP gets through; it falls back to polling only if that poll succeeds and WebSocket fails once more. @default 2
   */
  fallbackAfter?: number;
  /** Long-poll wait sent as `Prefer: wait=N`, seconds (PROTOCOL.md caps it at 30); 0 = plain polling. @default 25 */
  longPoll?: number;
  /** WebSocket probes while polling. */
  probe?: ProbeOptions;
  /** Keep each channel's cursor in sessionStorage so a reload resumes where the page left off. @default false */
  persist?: boolean;
  /**
   * Tabs of this origin with the same `url` and the same user (the token's `sub`) share one
   * connection: one tab holds it, the others hear it over a BroadcastChannel. Only in a browser
   * tab (`document`, `navigator.locks` and `BroadcastChannel`); elsewhere always off.
   * @default true in a browser tab
   */
  share?: boolean;
  /** Log every policy input and its effects: `true` for console.debug, or a function of your own. @default false */
  debug?: boolean | ((...args: unknown[]) => void);
  /** WebSocket constructor. @default globalThis.WebSocket */
  WebSocket?: typeof WebSocket;
  /** fetch implementation for polling. @default globalThis.fetch */
  fetch?: typeof fetch;
  /** Time and timers. @default Date.now and the global setTimeout/clearTimeout */
  clock?: Clock;
  /** Random source in [0, 1) for every jitter. @default Math.random */
  random?: () => number;
}

export interface Client<T = unknown> {
  /** Current state. */
  readonly state: State;
  /** The transport delivering messages now, null while none is. */
  readonly transport: Transport | null;
  /** Whether this tab holds the connection: false in a tab that shares another tab's (`share`). */
  readonly leader: boolean;
  /** Add a handler; returns a function that removes it. A handler that throws is reported and affects no other. */
  on<K extends keyof TidingsEvents<T>>(type: K, handler: (payload: TidingsEvents<T>[K]) => void): () => void;
  off<K extends keyof TidingsEvents<T>>(type: K, handler?: (payload: TidingsEvents<T>[K]) => void): void;
  /** Resolves when live events flow (state `open` or `polling`); rejects if the client stops first. */
  ready(): Promise<void>;
  /** Add a channel, after `cursor` (else the persisted one, else from now on). Other channels lose nothing. */
  subscribe(channel: string, cursor?: string | null): void;
  /** Drop a channel. Without any channel left the client stops; `subscribe()` starts it again. */
  unsubscribe(channel: string): void;
  /** The subscribed channels. */
  channels(): string[];
  /** Last cursor per channel (see PROTOCOL.md "cursor"). */
  cursors(): Record<string, string>;
  /** Drop the current transport and connect again at once. */
  reconnect(): void;
  /** Connect again after `close()` or a fatal error, from the cursors held. */
  start(): void;
  /** Stop: closes the socket, aborts polling, state `stopped`. */
  close(): void;
}
