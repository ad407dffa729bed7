// "Has this node's live feed reached cursor X on channel C yet?" (issue 12, item 4)
//
// Why: on the Redis bus a subscriber's replay is read on the command connection
// while live events arrive on another connection, which may lag behind it. A
// replayed event whose live copy arrives after the connection went live was sent
// twice (33 of 150 reconnects: duplicates, "172, 174, 172, 174"). The connection
// therefore waits, before going live, until the live feed has delivered what the
// replay ended with: every live event after that is newer than the replay, and
// every older one went into the connection's pending queue, where it is deduped.
//
// Waiting costs nothing in the usual case (the feed is already past the cursor:
// `wait` returns null, no promise). A waiter that is never reached (a cursor the
// feed will never deliver, say a well-formed cursor from the future) is released
// after `timeoutMs`: the connection then goes live as it did before.

interface Waiter { cursor: string; resolve: () => void; timer: ReturnType<typeof setTimeout> }

export class LiveBarrier {
  private readonly waiting = new Map<string, Waiter[]>();

  /** @param isAfter the bus's cursor order: true when a comes after b. */
  constructor(private readonly isAfter: (a: string, b: string) => boolean, private readonly timeoutMs = 2_000) {}

  /**
   * Null when `delivered` (the newest cursor the live feed has handed on for the
   * channel, null if none yet) is at or past `cursor`; else a promise resolved
   * once `advanced` reports it, or after the timeout.
   */
  wait(channel: string, cursor: string, delivered: string | null): Promise<void> | null {
    if (delivered !== null && !this.isAfter(cursor, delivered)) return null;
    return new Promise<void>((resolve) => {
      let list = this.waiting.get(channel);
      if (list === undefined) this.waiting.set(channel, (list = []));
      const w: Waiter = { cursor, resolve, timer: setTimeout(() => this.release(channel, w), this.timeoutMs) };
      w.timer.unref?.();
      list.push(w);
    });
  }

  /** The live feed of `channel` has delivered up to `delivered`. */
  advanced(channel: string, delivered: string): void {
    const list = this.waiting.get(channel);
    if (list === undefined) return;
    for (const w of [...list]) if (!this.isAfter(w.cursor, delivered)) this.release(channel, w);
  }

  /** Nothing more will come live for `channel` (unwatched), or for any (closed): release its waiters. */
  releaseAll(channel?: string): void {
    for (const [ch, list] of [...this.waiting]) if (channel === undefined || ch === channel) for (const w of [...list]) this.release(ch, w);
  }

  /** Waiters not released yet (tests). */
  get size(): number {
    let n = 0;
    for (const l of this.waiting.values()) n += l.length;
    return n;
  }

  private release(channel: string, w: Waiter): void {
    const list = this.waiting.get(channel);
    const i = list === undefined ? -1 : list.indexOf(w);
    if (i < 0) return;
    list!.splice(i, 1);
    if (list!.length === 0) this.waiting.delete(channel);
    clearTimeout(w.timer);
    w.resolve();
  }
}
