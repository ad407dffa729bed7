// Long-polls being held (Prefer: wait). No timer per request: waiters are indexed
// by channel, woken by live events, and expired by one shared sweep interval
// that runs only while something is held.
import type { Bus, StoredEvent } from '../pubsub/bus.js';

/**
 * evaluating: reading history (an event arriving now marks it dirty, so it reads again);
 * held: parked until an event, its deadline or a drain; done: answered or abandoned.
 */
export type WaiterPhase = 'evaluating' | 'held' | 'done';

export interface Waiter {
  readonly channels: readonly string[];
  /** Absolute ms on the HeldPolls clock. */
  readonly deadline: number;
  phase: WaiterPhase;
  dirty: boolean;
  /** Called after the phase moved held -> evaluating; the owner evaluates and answers or re-parks. */
  wake(reason: 'event' | 'deadline' | 'drain'): void;
  /** The token's subject and the remote address, for the per-holder limits (countOf). */
  readonly sub?: string;
  readonly source?: string;
}

export interface HeldPollsOptions {
  /** Clock for deadlines. @default Date.now */
  now?: () => number;
  /**
   * Sweep period; a held poll answers up to this late after its deadline.
   * 0 = no interval (tests call sweep()). @default 500
   */
  sweepIntervalMs?: number;
  /** While true, the sweep releases every held poll (drain). */
  isDraining?: () => boolean;
  /** Told the new count after every change (the metrics gauge). */
  onSize?: (n: number) => void;
}

export class HeldPolls {
  private readonly byChannel = new Map<string, Set<Waiter>>();
  private readonly all = new Set<Waiter>();
  /** Registered waiters per token subject and per remote address (maxHeldPollsPerSub / PerSource). */
  private readonly perSub = new Map<string, number>();
  private readonly perSource = new Map<string, number>();
  private timer: ReturnType<typeof setInterval> | null = null;
  /** Set by releaseAll(): every waiter is answered now and none is parked again. */
  closing = false;
  readonly now: () => number;
  private readonly sweepIntervalMs: number;
  private readonly isDraining: () => boolean;
  private readonly onSize: (n: number) => void;

  constructor(private readonly bus: Pick<Bus, 'watch' | 'unwatch'>, opts: HeldPollsOptions = {}) {
    this.now = opts.now ?? Date.now;
    this.sweepIntervalMs = opts.sweepIntervalMs ?? 500;
    this.isDraining = opts.isDraining ?? (() => false);
    this.onSize = opts.onSize ?? (() => {});
  }

  /** Waiters registered (evaluating or held). */
  get size(): number {
    return this.all.size;
  }

  /** Registered waiters of one token subject and from one address (each includes `w` once it is registered). */
  countOf(w: Pick<Waiter, 'sub' | 'source'>): { sub: number; source: number } {
    return {
      sub: w.sub === undefined ? 0 : this.perSub.get(w.sub) ?? 0,
      source: w.source === undefined ? 0 : this.perSource.get(w.source) ?? 0,
    };
  }

  /** Index the waiter and make the bus deliver its channels' live events to this node. */
  register(w: Waiter): void {
    if (this.all.has(w)) return;
    this.all.add(w);
    if (w.sub !== undefined) bump(this.perSub, w.sub, 1);
    if (w.source !== undefined) bump(this.perSource, w.source, 1);
    for (const ch of w.channels) {
      let set = this.byChannel.get(ch);
      if (!set) this.byChannel.set(ch, (set = new Set()));
      set.add(w);
      this.bus.watch(ch);
    }
    if (this.timer === null && this.sweepIntervalMs > 0) {
      this.timer = setInterval(() => this.sweep(), this.sweepIntervalMs);
      this.timer.unref();
    }
    this.onSize(this.all.size);
  }

  unregister(w: Waiter): void {
    if (!this.all.delete(w)) return;
    if (w.sub !== undefined) bump(this.perSub, w.sub, -1);
    if (w.source !== undefined) bump(this.perSource, w.source, -1);
    for (const ch of w.channels) {
      const set = this.byChannel.get(ch);
      if (set) {
        set.delete(w);
        if (set.size === 0) this.byChannel.delete(ch);
      }
      this.bus.unwatch(ch);
    }
    if (this.all.size === 0) this.stopTimer();
    this.onSize(this.all.size);
  }

  /** A live event: wake the waiters parked on its channel; mark those mid-evaluation dirty. */
  onEvent(e: StoredEvent): void {
    const set = this.byChannel.get(e.channel);
    if (!set) return;
    for (const w of [...set]) {
      if (w.phase === 'evaluating') w.dirty = true;
      else if (w.phase === 'held') {
        w.phase = 'evaluating';
        w.wake('event');
      }
    }
  }

  /** Wake every held waiter whose deadline has come (all of them while draining or closing). */
  sweep(now: number = this.now()): void {
    const draining = this.closing || this.isDraining();
    for (const w of [...this.all]) {
      if (w.phase !== 'held') continue;
      if (draining || w.deadline <= now) {
        w.phase = 'evaluating';
        w.wake(draining ? 'drain' : 'deadline');
      }
    }
  }

  /** Answer every held waiter now (shutdown); owners must not park again once `closing` is set. */
  releaseAll(): void {
    this.closing = true;
    this.sweep();
    this.stopTimer();
  }

  close(): void {
    this.stopTimer();
  }

  private stopTimer(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }
}

/** Add `d` to a count, forgetting the key at zero (the maps hold only current holders). */
function bump(m: Map<string, number>, key: string, d: number): void {
  const n = (m.get(key) ?? 0) + d;
  if (n <= 0) m.delete(key);
  else m.set(key, n);
}
