// Per-channel bounded history: a ring of the last `capacity` events of each
// channel (TIDINGS_HISTORY), plus a cap on the bytes retained over all channels
// (least recently published channels are dropped first). Pure data, no I/O.
import type { Replay, StoredEvent } from './bus.js';
import { formatCursor, parseCursor } from './cursor.js';

/** Default cap on retained event bytes over all channels (approximate: JSON length + overhead). */
export const DEFAULT_MAX_RETAINED_BYTES = 256 * 1024 * 1024;
/** Bookkeeping per stored event on top of its JSON, for the byte cap. */
const EVENT_OVERHEAD = 96;

interface Ring {
  /** seq of the newest event (== base when nothing was published since the ring was made). */
  head: number;
  /** seq the ring started from: cursors below it are from before (a dropped ring) and get reset. */
  base: number;
  /** Event with seq s sits at index (s - 1) % capacity; grows up to capacity, then wraps. */
  items: StoredEvent[];
  /** Approximate bytes of the events held. */
  bytes: number;
}

const sizeOf = (e: StoredEvent) => e.json.length + e.channel.length + EVENT_OVERHEAD;

export class History {
  /** In least-recently-published-first order (a publish moves its ring to the end). */
  private readonly rings = new Map<string, Ring>();
  /** Events appended since start, over all channels: every channel's head is <= this. */
  private appended = 0;
  /**
   * `appended` when a ring was last dropped (0: never). A new ring starts at this
   * seq, so every cursor handed out by a dropped ring is <= its base: those below
   * get reset, one equal to it was the dropped ring's head and misses nothing.
   */
  private watermark = 0;
  private bytes = 0;

  /**
   * @param capacity events kept per channel (config.history, >= 1).
   * @param epoch this server start's epoch (cursor.ts newEpoch()).
   * @param maxBytes retained bytes over all channels before whole channels are dropped.
   */
  constructor(readonly capacity: number, readonly epoch: string, readonly maxBytes: number = DEFAULT_MAX_RETAINED_BYTES) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`history capacity must be an integer >= 1, got ${capacity}`);
  }

  /** Append one event and return it with its new cursor. */
  append(channel: string, json: string): StoredEvent {
    let ring = this.rings.get(channel);
    if (ring) this.rings.delete(channel); // re-inserted below: most recently published last
    else ring = { head: this.watermark, base: this.watermark, items: [], bytes: 0 };
    this.rings.set(channel, ring);
    this.appended += 1;
    ring.head += 1;
    const event: StoredEvent = { channel, cursor: formatCursor(this.epoch, ring.head), json };
    const i = (ring.head - 1) % this.capacity;
    const old = ring.items[i];
    if (old) {
      ring.bytes -= sizeOf(old);
      this.bytes -= sizeOf(old);
    }
    ring.items[i] = event;
    ring.bytes += sizeOf(event);
    this.bytes += sizeOf(event);
    this.evict(channel);
    return event;
  }

  /** The channel's head cursor; for a channel with no ring, the seq a new ring would start from. */
  head(channel: string): string {
    return formatCursor(this.epoch, this.rings.get(channel)?.head ?? this.watermark);
  }

  /**
   * Every event after `cursor`, in order, or reset with the head when we cannot
   * prove we still hold all of them (PROTOCOL.md "No silent loss"): malformed,
   * another epoch (a cursor from before a restart), older than the retained
   * window or than the ring itself, or ahead of the head (never handed out by
   * this epoch: a bug or a forgery).
   */
  readAfter(channel: string, cursor: string): Replay {
    const ring = this.rings.get(channel);
    const head = ring?.head ?? this.watermark;
    const base = ring?.base ?? this.watermark;
    const reset: Replay = { kind: 'reset', head: formatCursor(this.epoch, head) };
    const c = parseCursor(cursor);
    if (!c || c.epoch !== this.epoch || c.seq > head || c.seq < base) return reset;
    const retained = Math.min(head - base, this.capacity);
    // The oldest event we hold is head - retained + 1; the client needs c.seq + 1 onward.
    if (c.seq < head - retained) return reset;
    const events: StoredEvent[] = [];
    for (let s = c.seq + 1; s <= head; s++) events.push(ring!.items[(s - 1) % this.capacity]!);
    return { kind: 'events', events };
  }

  /** Channels with a ring (for tests and metrics). */
  get channels(): number {
    return this.rings.size;
  }

  /** Approximate bytes retained over all channels. */
  get retainedBytes(): number {
    return this.bytes;
  }

  /** Drop least recently published rings while over the byte cap; never the one just appended to. */
  private evict(keep: string): void {
    for (const [ch, ring] of this.rings) {
      if (this.bytes <= this.maxBytes) return;
      if (ch === keep) return; // it is the last (most recent) entry: nothing older is left
      this.rings.delete(ch);
      this.bytes -= ring.bytes;
      this.watermark = this.appended;
    }
  }
}
