import type { Cursors } from './cursors.js';
import type { TidingsError } from './errors.js';
import type { ServerMessage } from './messages.js';
import type { Clock, Transport } from './types.js';

/** Options after defaults, in ms unless named otherwise. */
export interface Settings {
  httpUrl: string;
  wsUrl: string;
  channels: string[];
  base: number;
  cap: number;
  resetAfter: number;
  grace: number;
  connectTimeout: number;
  longPoll: number;
  probeFirst: number;
  probeMax: number;
}

/**
 * What a transport needs from the client: settings, edges (clock, random,
 * fetch, WebSocket) and the client's reactions. Transports share it, so the
 * fallback policy in client.ts sees both the same way.
 */
export interface Ctx {
  s: Settings;
  clock: Clock;
  random: () => number;
  WS: typeof WebSocket | undefined;
  fetch: typeof fetch;
  /** Resolves after ms on the injected clock; never after close(). */
  sleep(ms: number): Promise<void>;
  /** Resolves once navigator.onLine is not false. */
  online(): Promise<void>;
  /** The cached token, fetching it if needed; rejects with TOKEN_FETCH_FAILED. */
  token(): Promise<string>;
  /** Forget the cached token: the next token() calls the option again. */
  stale(): void;
  cursors: Cursors;
  /** A message from a transport (event, reset, welcome heads). */
  deliver(m: ServerMessage, via: Transport): void;
  /** `via` is delivering: WebSocket reached welcome, or a poll succeeded. */
  up(via: Transport): void;
  /** `via` stopped delivering and is retrying. */
  down(via: Transport): void;
  /** A WebSocket attempt ended without reaching welcome. */
  failed(): void;
  /** Report a non-fatal error. */
  error(e: TidingsError): void;
  /** Report a fatal error and stop everything. */
  fatal(e: TidingsError): void;
  /** Page hidden (document.visibilityState): polling slows down. */
  hidden(): boolean;
}
