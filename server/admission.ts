// Admission of a new TCP connection, before a single byte is read: the socket
// budget (below the fd limit), the pending-head budget and its fairness per
// source address, and the head deadline. Pure decisions; the gateway applies them.
//
// Why separate budgets: a socket that has sent nothing has cost us one fd and
// one small object, and must not cost a real client its upgrade. Sockets still
// sending their head are therefore not counted against maxHandshakes (upgraded
// connections awaiting hello); they have their own cap, and when it is full the
// OLDEST pending head is dropped rather than the newcomer: a real client sends
// its head within a round trip of connecting, so it is never the oldest. The same
// holds per source address: past its share, an address loses ITS oldest pending
// head, so a flood from one address (a tester's loopback, a NAT) churns its own
// idle sockets and a real client at that address still gets through.
import type { Config } from './config.js';

export type SocketVerdict =
  /**
   * Take it; its head must be complete within `headTimeoutMs`. First drop the
   * oldest pending head of the same address (`evict: 'source'`) or of all
   * (`evict: 'oldest'`), or none.
   */
  | { kind: 'admit'; headTimeoutMs: number; evict: 'none' | 'source' | 'oldest' }
  /** Close it at once (nothing was read, nothing is owed). */
  | { kind: 'refuse'; reason: 'max_sockets' };

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
  // Evicting from the source also makes room in the global budget.
  const evict = load.fromSource >= limits.headsPerSource ? 'source' : load.pendingHeads >= limits.maxPendingHeads ? 'oldest' : 'none';
  return { kind: 'admit', headTimeoutMs: headTimeout(load.pendingHeads + 1, limits), evict };
}

/** The full handshake window normally; the short one once pending heads pass half their cap (a flood). */
export function headTimeout(pendingHeads: number, limits: Pick<Limits, 'maxPendingHeads' | 'helloTimeoutMs' | 'headTimeoutUnderLoadMs'>): number {
  return pendingHeads * 2 > limits.maxPendingHeads ? Math.min(limits.headTimeoutUnderLoadMs, limits.helloTimeoutMs) : limits.helloTimeoutMs;
}

/**
 * Pending heads per remote address, oldest first; an address with none is
 * forgotten (the map holds only addresses with pending heads: transient).
 */
export class SourceHeads<T> {
  private readonly bySource = new Map<string, Set<T>>();

  get(source: string): number {
    return this.bySource.get(source)?.size ?? 0;
  }

  add(source: string, item: T): void {
    let set = this.bySource.get(source);
    if (set === undefined) this.bySource.set(source, (set = new Set()));
    set.add(item);
  }

  remove(source: string, item: T): void {
    const set = this.bySource.get(source);
    if (set === undefined || !set.delete(item)) return;
    if (set.size === 0) this.bySource.delete(source);
  }

  /** The address's longest-pending head. */
  oldest(source: string): T | undefined {
    return this.bySource.get(source)?.values().next().value;
  }

  /** Addresses with at least one pending head (tests, metrics). */
  get size(): number {
    return this.bySource.size;
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
