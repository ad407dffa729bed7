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
  /** How long the oldest unfinished job has waited, ms (0 when the queue is empty). */
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
