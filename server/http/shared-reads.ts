// Held long-polls woken by one live event share their history reads.
//
// Why: a waiter woken by an event re-reads the channel after its cursor. With
// 1,000 clients long-polling one channel they all hold the same cursor, so one
// publish cost 1,000 identical reads (on Redis: 1,000 script calls). Identical
// reads in flight are joined instead: one read per (channel, cursor) per wake,
// O(1) per publish per node.
//
// Why it is safe: a live event for a channel drops that channel's reads in
// flight (`invalidate`) before any waiter is woken, so a read shared after the
// event was started after it and sees it. A waiter that joins an older read is
// registered already, so the next event for its channel wakes it (or marks it
// dirty) exactly as if its own read had been that old.
import type { Bus, Replay } from '../pubsub/bus.js';

export class SharedReads implements Pick<Bus, 'head' | 'readAfter'> {
  /** channel -> cursor -> the read in flight. */
  private readonly reads = new Map<string, Map<string, Promise<Replay>>>();
  private readonly heads = new Map<string, Promise<string>>();

  constructor(private readonly bus: Pick<Bus, 'head' | 'readAfter'>) {}

  readAfter(channel: string, cursor: string): Promise<Replay> {
    let byCursor = this.reads.get(channel);
    const inFlight = byCursor?.get(cursor);
    if (inFlight !== undefined) return inFlight;
    if (byCursor === undefined) this.reads.set(channel, (byCursor = new Map()));
    const p = this.bus.readAfter(channel, cursor);
    byCursor.set(cursor, p);
    const forget = () => {
      const m = this.reads.get(channel);
      if (m?.get(cursor) !== p) return; // invalidated meanwhile
      m.delete(cursor);
      if (m.size === 0) this.reads.delete(channel);
    };
    p.then(forget, forget);
    return p;
  }

  head(channel: string): Promise<string> {
    const inFlight = this.heads.get(channel);
    if (inFlight !== undefined) return inFlight;
    const p = this.bus.head(channel);
    this.heads.set(channel, p);
    const forget = () => { if (this.heads.get(channel) === p) this.heads.delete(channel); };
    p.then(forget, forget);
    return p;
  }

  /** A live event on `channel`: reads started before it may miss it, so none is joined from now on. */
  invalidate(channel: string): void {
    this.reads.delete(channel);
    this.heads.delete(channel);
  }

  /** Reads in flight (tests). */
  get size(): number {
    let n = this.heads.size;
    for (const m of this.reads.values()) n += m.size;
    return n;
  }
}
