// The embedded, single-node Bus: history in memory, live events delivered
// synchronously. Implements the contract in bus.ts.
import type { Bus, Replay, StoredEvent } from './bus.js';
import { newEpoch, parseCursor } from './cursor.js';
import { History } from './history.js';

export interface MemoryBusOptions {
  /** Events kept per channel (config.history). @default 1000 */
  history?: number;
  /** This start's epoch; tests pin it. @default newEpoch() */
  epoch?: string;
  /** Retained bytes over all channels before least recently published channels are dropped. @default 256 MiB */
  maxRetainedBytes?: number;
}

export class MemoryBus implements Bus {
  onEvent: ((event: StoredEvent) => void) | null = null;
  /** Never called: an in-memory bus cannot lose events between append and delivery. */
  onGap: ((channel: string, head: string) => void) | null = null;
  readonly epoch: string;
  private readonly history: History;
  /** channel -> number of watch() calls not yet matched by unwatch(). */
  private readonly watchers = new Map<string, number>();
  private closed = false;

  constructor(opts: MemoryBusOptions = {}) {
    this.epoch = opts.epoch ?? newEpoch();
    this.history = new History(opts.history ?? 1000, this.epoch, opts.maxRetainedBytes);
  }

  /**
   * Append each event, then hand it to onEvent if its channel is watched, before
   * the next one is appended: a listener that reads history sees exactly the
   * events up to the one it is told about, so replay and live never overlap wrongly.
   */
  async publish(events: { channel: string; json: string }[]): Promise<string[]> {
    if (this.closed) throw new Error('bus closed');
    const cursors: string[] = [];
    for (const e of events) {
      const stored = this.history.append(e.channel, e.json);
      cursors.push(stored.cursor);
      if (this.onEvent && this.watchers.has(e.channel)) this.onEvent(stored);
    }
    return cursors;
  }

  async head(channel: string): Promise<string> {
    return this.history.head(channel);
  }

  async readAfter(channel: string, cursor: string): Promise<Replay> {
    return this.history.readAfter(channel, cursor);
  }

  /**
   * Same epoch: compare sequence numbers. A cursor of ours is after any cursor we
   * cannot place (another epoch, malformed): such a cursor was answered with reset.
   */
  isAfter(a: string, b: string): boolean {
    const x = parseCursor(a);
    if (!x || x.epoch !== this.epoch) return false;
    const y = parseCursor(b);
    if (!y || y.epoch !== this.epoch) return true;
    return x.seq > y.seq;
  }

  /** Reference-counted: each watch() needs its own unwatch(). */
  watch(channel: string): void {
    this.watchers.set(channel, (this.watchers.get(channel) ?? 0) + 1);
  }

  unwatch(channel: string): void {
    const n = this.watchers.get(channel) ?? 0;
    if (n <= 1) this.watchers.delete(channel);
    else this.watchers.set(channel, n - 1);
  }

  /** True while at least one watch() is outstanding for the channel. */
  isWatched(channel: string): boolean {
    return this.watchers.has(channel);
  }

  health(): 'ok' | 'degraded' {
    return 'ok';
  }

  async close(): Promise<void> {
    this.closed = true;
    this.onEvent = null;
    this.watchers.clear();
  }
}
