// Admission of a new TCP connection, before a single byte is read: the socket
// budget (below the fd limit), the pending-head budget and its fairness per
// source address, and the head deadline. Pure decisions; the gateway applies them.
//
// Why separate budgets: a socket that has sent nothing has cost us one fd and
// one small object, and must not cost a real client its upgrade. Sockets still
// sending their head are therefore not counted against maxHandshakes (upgraded
// connections awaiting hello); they have their own cap, and when it is full the
// OLDEST pending head is dropped rather than the newcomer: a real client sends
// its head within a round trip of connecting, so it is never the oldest.
import type { Config } from './config.js';

export type SocketVerdict =
  /** Take it; its head must be complete within `headTimeoutMs`. `evictOldest`: first drop the oldest pending head. */
  | { kind: 'admit'; headTimeoutMs: number; evictOldest: boolean }
  /** Close it at once (nothing was read, nothing is owed). */
  | { kind: 'refuse'; reason: 'max_sockets' | 'source' };

export interface SocketLoad {
  /** Open sockets on the port (WebSocket and HTTP), not counting this one. */
  sockets: number;
  /** Sockets whose request head is incomplete, not counting this one. */
  pendingHeads: number;
  /** Of those, from this socket's remote address. */
  fromSource: number;
}

type Limits = Pick<Config, 'maxSockets' | 'maxPendingHeads' | 'headsPerSource' | 'helloTimeoutMs' | 'headTimeoutUnderLoadMs'>;

export function admitSocket(load: SocketLoad, limits: Limits): SocketVerdict {
  if (limits.maxSockets > 0 && load.sockets >= limits.maxSockets) return { kind: 'refuse', reason: 'max_sockets' };
  if (load.fromSource >= limits.headsPerSource) return { kind: 'refuse', reason: 'source' };
  return {
    kind: 'admit',
    headTimeoutMs: headTimeout(load.pendingHeads + 1, limits),
    evictOldest: load.pendingHeads >= limits.maxPendingHeads,
  };
}

/** The full handshake window normally; the short one once pending heads pass half their cap (a flood). */
export function headTimeout(pendingHeads: number, limits: Pick<Limits, 'maxPendingHeads' | 'helloTimeoutMs' | 'headTimeoutUnderLoadMs'>): number {
  return pendingHeads * 2 > limits.maxPendingHeads ? Math.min(limits.headTimeoutUnderLoadMs, limits.helloTimeoutMs) : limits.helloTimeoutMs;
}

/** Counts per remote address; an address at zero is forgotten (the map holds only addresses with pending heads). */
export class SourceCounts {
  private readonly counts = new Map<string, number>();

  get(source: string): number {
    return this.counts.get(source) ?? 0;
  }

  add(source: string): void {
    this.counts.set(source, (this.counts.get(source) ?? 0) + 1);
  }

  remove(source: string): void {
    const n = this.counts.get(source);
    if (n === undefined) return;
    if (n <= 1) this.counts.delete(source);
    else this.counts.set(source, n - 1);
  }

  /** Addresses with at least one count (tests, metrics). */
  get size(): number {
    return this.counts.size;
  }
}

/**
 * A log line at most once per `everyMs` for a condition that may hold for a
 * whole flood: the first occurrence is logged with how many were suppressed since.
 */
export class RateLimitedLog {
  private last = -Infinity;
  private suppressed = 0;

  constructor(private readonly everyMs: number, private readonly now: () => number = Date.now) {}

  /** Returns how many occurrences were suppressed since the last line, or -1 when this one is suppressed too. */
  tick(): number {
    const t = this.now();
    if (t - this.last < this.everyMs) {
      this.suppressed++;
      return -1;
    }
    this.last = t;
    const n = this.suppressed;
    this.suppressed = 0;
    return n;
  }
}
