// Per-channel bounded history: a ring of the last `capacity` events of each
// channel (TIDINGS_HISTORY). Pure data, no I/O: the memory bus wraps it.
import type { Replay, StoredEvent } from './bus.js';
import { formatCursor, parseCursor } from './cursor.js';

interface Ring {
  /** seq of the newest event (0: nothing published yet). */
  head: number;
  /** Event with seq s sits at index (s - 1) % capacity; grows up to capacity, then wraps. */
  items: StoredEvent[];
}

export class History {
  private readonly rings = new Map<string, Ring>();

  /**
   * @param capacity events kept per channel (config.history, >= 1).
   * @param epoch this server start's epoch (cursor.ts newEpoch()).
   */
  constructor(readonly capacity: number, readonly epoch: string) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`history capacity must be an integer >= 1, got ${capacity}`);
  }

  /** Append one event and return it with its new cursor. */
  append(channel: string, json: string): StoredEvent {
    let ring = this.rings.get(channel);
    if (!ring) this.rings.set(channel, (ring = { head: 0, items: [] }));
    ring.head += 1;
    const event: StoredEvent = { channel, cursor: formatCursor(this.epoch, ring.head), json };
    ring.items[(ring.head - 1) % this.capacity] = event;
    return event;
  }

  /** The channel's head cursor; `<epoch>-0` for a channel never published to (a valid resume point). */
  head(channel: string): string {
    return formatCursor(this.epoch, this.rings.get(channel)?.head ?? 0);
  }

  /**
   * Every event after `cursor`, in order, or reset with the head when we cannot
   * prove we still hold all of them (PROTOCOL.md "No silent loss"): malformed,
   * another epoch (a cursor from before a restart), older than the retained
   * window, or ahead of the head (never handed out by this epoch: a bug or a forgery).
   */
  readAfter(channel: string, cursor: string): Replay {
    const ring = this.rings.get(channel);
    const head = ring?.head ?? 0;
    const c = parseCursor(cursor);
    if (!c || c.epoch !== this.epoch || c.seq > head) return { kind: 'reset', head: formatCursor(this.epoch, head) };
    const retained = Math.min(head, this.capacity);
    // The oldest event we hold is head - retained + 1; the client needs c.seq + 1 onward.
    if (c.seq < head - retained) return { kind: 'reset', head: formatCursor(this.epoch, head) };
    const events: StoredEvent[] = [];
    for (let s = c.seq + 1; s <= head; s++) events.push(ring!.items[(s - 1) % this.capacity]!);
    return { kind: 'events', events };
  }

  /** Number of channels with state (for tests and metrics). */
  get channels(): number {
    return this.rings.size;
  }
}
