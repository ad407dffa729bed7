// The fan-out queue's backlog, and when it is too far behind to accept more.
//
// Why: the hub's queue had no bound. With 5,000 subscribers and 300 publishes/s
// publishes were acknowledged while delivery fell half a minute behind and
// memory grew with backlog x event size. Refusing the publish (503 + Retry-After)
// pushes the wait back to the publisher, who can retry, instead of accepting
// events that will arrive too late to matter. Events that come from the bus
// (other nodes) are never dropped: only this node's publishes are refused.

export interface Backlog {
  /** Fan-out jobs not finished (an event not yet written to every local subscriber). */
  jobs: number;
  /** Frame bytes of those jobs. */
  bytes: number;
  /**
   * Delivery lag, ms: how long an event queued now would wait for its last
   * subscriber, estimated as the writes queued ahead of it at the hub's recent
   * write rate; at least how long the oldest queued event has waited already.
   * 0 when the queue is empty.
   */
  lagMs: number;
}

export interface BacklogLimits {
  /** config.maxFanoutLagMs */
  maxFanoutLagMs: number;
  /** config.maxFanoutQueueBytes */
  maxFanoutQueueBytes: number;
}

/** Null when publishes are welcome; else why not, for the 503 message and /readyz. */
export function fanoutBehind(b: Backlog, limits: BacklogLimits): string | null {
  if (b.lagMs > limits.maxFanoutLagMs) return `fan-out is ${Math.round(b.lagMs)} ms behind (limit ${limits.maxFanoutLagMs} ms)`;
  if (b.bytes > limits.maxFanoutQueueBytes) return `fan-out queue holds ${b.bytes} bytes (limit ${limits.maxFanoutQueueBytes})`;
  return null;
}

/** Retry-After for a fan-out 503, seconds: about the time the queue needs to catch up, 1 to 30. */
export function fanoutRetryAfterS(b: Backlog): number {
  return Math.min(30, Math.max(1, Math.ceil(b.lagMs / 1000)));
}

/** Window over which the hub's write rate is measured (while it has work). */
export const RATE_WINDOW_MS = 250;

/**
 * The hub's write rate in wall-clock time while it has work (slices, the event
 * loop between them, a CPU shared with others: all of it counts, since all of
 * it delays delivery). Why not just the oldest job's wait: with 5,000
 * subscribers and 300 publishes/s the oldest job has waited 2 s when some 600
 * jobs are queued behind it, i.e. half a minute of work. The time to write what
 * is queued is what an event published now will wait.
 */
export class DrainRate {
  private start = -1;
  private writes = 0;
  /** Writes per ms, smoothed; 0 until a first window was measured. */
  private perMs = 0;

  /** The hub has work from `now` on (no-op while already busy). */
  busy(now: number): void {
    if (this.start >= 0) return;
    this.start = now;
    this.writes = 0;
  }

  /** `n` writes were done by `now`. */
  add(now: number, n: number): void {
    if (this.start < 0) this.start = now;
    this.writes += n;
    const dt = now - this.start;
    if (dt < RATE_WINDOW_MS) return;
    const r = this.writes / dt;
    this.perMs = this.perMs === 0 ? r : (this.perMs + r) / 2;
    this.start = now;
    this.writes = 0;
  }

  /** The queue is empty: time without work does not count against the rate. */
  idle(): void {
    this.start = -1;
  }

  /** How long `queuedWrites` writes will take at the measured rate (0 while unknown). */
  projectedMs(queuedWrites: number): number {
    return this.perMs > 0 ? queuedWrites / this.perMs : 0;
  }
}
