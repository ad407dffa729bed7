// CONTRACT: the bus + history behind one small interface. The in-memory bus is
// the embedded default; the Redis bus (several nodes) implements the same.

/** An event as stored and delivered. `json` is the serialized `data` (kept as text so it is encoded once). */
export interface StoredEvent {
  channel: string;
  cursor: string;
  json: string;
}

export type Replay =
  /** Every event after the cursor, in order (possibly none). */
  | { kind: 'events'; events: StoredEvent[] }
  /** Cannot prove we hold every event after the cursor: send `reset` with the current head. */
  | { kind: 'reset'; head: string };

export interface Bus {
  /** Append events (each atomically) and resolve with their cursors once durable in history. */
  publish(events: { channel: string; json: string }[]): Promise<string[]>;
  /** Current head cursor of a channel (a valid resume point even if nothing was published yet). */
  head(channel: string): Promise<string>;
  /** Events of `channel` after `cursor`, or reset. */
  readAfter(channel: string, cursor: string): Promise<Replay>;
  /**
   * Optional, for buses whose live feed may lag behind their reads (Redis: two
   * connections). Null when this node's live feed of `channel` has already
   * delivered `cursor` (or the channel is not watched); else a promise that
   * resolves once it has. A subscriber waits for it before going live, so no
   * replayed event arrives again live. A bus that delivers synchronously with
   * its writes (memory) leaves it out.
   */
  settled?(channel: string, cursor: string): Promise<void> | null;
  /** True when cursor `a` comes after `b` in the channel's order (for replay/live dedup). */
  isAfter(a: string, b: string): boolean;
  /**
   * Node-level interest: the bus delivers live events of `channel` to `onEvent`
   * only while this node is interested (Redis: one subscription per node).
   */
  watch(channel: string): void;
  unwatch(channel: string): void;
  /** The single live-event listener of this node (the hub). */
  onEvent: ((event: StoredEvent) => void) | null;
  /** Called when the bus lost events it cannot replay (e.g. Redis reconnect gap): the hub sends reset. */
  onGap: ((channel: string, head: string) => void) | null;
  /** 'ok' | 'degraded': what the bus knows without asking its backend (connection state). */
  health(): 'ok' | 'degraded';
  /**
   * Ask the backend (Redis PING) and resolve true if it answered within
   * `timeoutMs`, false otherwise; never rejects. For /readyz: a frozen backend
   * keeps its TCP connection, so only a round trip shows it. Absent: nothing to ask.
   */
  ping?(timeoutMs: number): Promise<boolean>;
  close(): Promise<void>;
}

/** Thrown by a Bus that cannot reach its backend (e.g. Redis down): publish answers 503 + Retry-After. */
export class BusUnavailableError extends Error {
  readonly code = 'BUS_UNAVAILABLE' as const;
  /** @param retryAfterS what to put in Retry-After (seconds). */
  constructor(message = 'bus unavailable', readonly retryAfterS = 2) {
    super(message);
    this.name = 'BusUnavailableError';
  }
}
