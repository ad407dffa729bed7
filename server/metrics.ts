// Prometheus metrics on a registry of our own (never prom-client's global one, so
// tests and several servers in one process do not collide). Metric names are part
// of the operator-facing surface: change them only with a note in docs/server.md.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Backlog } from './pubsub/backlog.js';

/** Why a WebSocket handshake was refused; the label values of tidings_handshake_rejections_total. */
export type HandshakeRejectReason =
  | 'malformed' | 'bad_key' | 'bad_version' | 'head_too_large' | 'origin' | 'over_capacity'
  | 'not_found' | 'draining' | 'blocked' | 'timeout';

export interface Metrics {
  readonly registry: Registry;
  /** Open WebSocket connections (after 101). */
  readonly wsConnections: Gauge;
  /** WebSocket handshakes answered 101. */
  readonly handshakes: Counter;
  /** Handshakes refused, by `reason` (HandshakeRejectReason). */
  readonly handshakeRejections: Counter<'reason'>;
  /** Open sockets on the port (WebSocket and HTTP), against TIDINGS_MAX_SOCKETS. */
  readonly openSockets: Gauge;
  /** Sockets closed at accept (max_sockets) or while their head was pending, dropped for a newcomer: source (the address's oldest), evicted (the oldest of all). */
  readonly socketsRefused: Counter<'reason'>;
  /** Messages written to subscribers (one per subscriber per message, both transports). */
  readonly messagesOut: Counter;
  /** Bytes written to subscribers. */
  readonly bytesOut: Counter;
  /** Connections closed 1013 because their send buffer went over the limit. */
  readonly slowConsumerCloses: Counter;
  /** Poll responses by `status` ("200", "304", "401", ...). */
  readonly pollResponses: Counter<'status'>;
  /** Long-polls being held right now. */
  readonly heldPolls: Gauge;
  /** Events accepted by POST /v1/publish. */
  readonly publishes: Counter;
  /** Replays refused 1013 because replays in memory reached TIDINGS_MAX_REPLAY_BYTES. */
  readonly replaysRefused: Counter;
  /** Publishes refused 503 fanout_behind (the fan-out queue past its lag or byte limit). */
  readonly publishesRefused: Counter;
  /** Where the fan-out gauges read from; server.ts sets it to the hub's backlog. */
  fanoutSource: (() => Backlog) | null;
  /** Time from receiving a publish request to answering it (includes the bus). */
  readonly publishDuration: Histogram;
  /** WebSocket closes by `code` and `by` (server: we sent the close; client: the peer did; 1006 "abnormal": the socket went without one). */
  readonly wsCloses: Counter<'code' | 'by'>;
  /** Bus (Redis) operations that failed, by `op` (publish, subscribe, poll). */
  readonly busErrors: Counter<'op'>;
  /** Prometheus text of this server's metrics and the process's (default metrics, build info). */
  render(): Promise<string>;
  /** The Content-Type of render()'s text. */
  readonly contentType: string;
  /**
   * Recent event-loop delay, p99 in ms, over the last window (>= windowMs; the
   * window rolls on read, so there is no timer). Used by the adaptive X-Poll-Interval.
   */
  eventLoopLagMs(): number;
  /** Stop the event-loop monitor (tests, shutdown). */
  close(): void;
}

export interface MetricsOptions {
  /** Width of the event-loop lag window. @default 5000 */
  lagWindowMs?: number;
  /** Injectable clock for the lag window. @default Date.now */
  now?: () => number;
}

export function createMetrics(opts: MetricsOptions = {}): Metrics {
  const registry = new Registry();
  const now = opts.now ?? Date.now;
  const windowMs = opts.lagWindowMs ?? 5000;
  // 10 ms resolution is plenty to see a loop that is busy for tens of ms.
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  let windowStart = now();
  let lastLagMs = 0;
  function eventLoopLagMs(): number {
    const t = now();
    if (t - windowStart >= windowMs) {
      // The histogram includes the sampling resolution itself; subtract it so an idle loop reads ~0.
      lastLagMs = loop.count > 0 ? Math.max(0, loop.percentile(99) / 1e6 - 10) : 0;
      loop.reset();
      windowStart = t;
    }
    return lastLagMs;
  }

  const wsConnections = new Gauge({ name: 'tidings_ws_connections', help: 'Open WebSocket connections', registers: [registry] });
  const handshakes = new Counter({ name: 'tidings_handshakes_total', help: 'WebSocket handshakes answered 101', registers: [registry] });
  const handshakeRejections = new Counter({
    name: 'tidings_handshake_rejections_total', help: 'WebSocket handshakes refused, by reason',
    labelNames: ['reason'] as const, registers: [registry],
  });
  const openSockets = new Gauge({ name: 'tidings_open_sockets', help: 'Open sockets on the port (WebSocket and HTTP)', registers: [registry] });
  const socketsRefused = new Counter({
    name: 'tidings_sockets_refused_total', help: 'Sockets closed at accept or while their head was pending, by reason',
    labelNames: ['reason'] as const, registers: [registry],
  });
  const messagesOut = new Counter({ name: 'tidings_messages_out_total', help: 'Messages written to subscribers', registers: [registry] });
  const bytesOut = new Counter({ name: 'tidings_bytes_out_total', help: 'Bytes written to subscribers', registers: [registry] });
  const slowConsumerCloses = new Counter({
    name: 'tidings_slow_consumer_closes_total', help: 'Connections closed 1013 for a send buffer over the limit', registers: [registry],
  });
  const pollResponses = new Counter({
    name: 'tidings_poll_responses_total', help: 'GET /v1/poll responses, by status', labelNames: ['status'] as const, registers: [registry],
  });
  const heldPolls = new Gauge({ name: 'tidings_held_polls', help: 'Long-polls being held', registers: [registry] });
  const publishes = new Counter({ name: 'tidings_publishes_total', help: 'Events accepted by POST /v1/publish', registers: [registry] });
  const replaysRefused = new Counter({
    name: 'tidings_replays_refused_total', help: 'hello replays refused 1013: replay memory budget reached', registers: [registry],
  });
  const publishesRefused = new Counter({
    name: 'tidings_publishes_refused_total', help: 'Publishes refused 503 because the fan-out is too far behind', registers: [registry],
  });
  const backlog = (): Backlog => m.fanoutSource?.() ?? { jobs: 0, bytes: 0, lagMs: 0 };
  new Gauge({ name: 'tidings_fanout_queue_jobs', help: 'Fan-out jobs (events) not yet written to every local subscriber', registers: [registry], collect() { this.set(backlog().jobs); } });
  new Gauge({ name: 'tidings_fanout_queue_bytes', help: 'Frame bytes in the fan-out queue', registers: [registry], collect() { this.set(backlog().bytes); } });
  new Gauge({ name: 'tidings_fanout_lag_seconds', help: 'How long the oldest event in the fan-out queue has waited', registers: [registry], collect() { this.set(backlog().lagMs / 1000); } });
  const publishDuration = new Histogram({
    name: 'tidings_publish_duration_seconds', help: 'POST /v1/publish handling time',
    buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1], registers: [registry],
  });
  const wsCloses = new Counter({
    name: 'tidings_ws_closes_total', help: 'WebSocket closes, by close code and by which side closed',
    labelNames: ['code', 'by'] as const, registers: [registry],
  });
  const busErrors = new Counter({
    name: 'tidings_bus_errors_total', help: 'Bus (Redis) operations that failed, by operation', labelNames: ['op'] as const, registers: [registry],
  });
  const proc = processRegistry();

  const m: Metrics = {
    registry, wsConnections, handshakes, handshakeRejections, openSockets, socketsRefused, messagesOut, bytesOut, slowConsumerCloses,
    pollResponses, heldPolls, publishes, publishesRefused, replaysRefused, fanoutSource: null, publishDuration, eventLoopLagMs,
    wsCloses, busErrors,
    contentType: registry.contentType,
    async render() {
      const [own, shared] = await Promise.all([registry.metrics(), proc.metrics()]);
      return own + '\n' + shared;
    },
    close() { loop.disable(); },
  };
  return m;
}

/** The version of the package this server runs from (set by the CLI; "unknown" when embedded). */
let buildVersion = 'unknown';
export function setBuildVersion(v: string): void {
  buildVersion = v;
}

let shared: Registry | null = null;
/**
 * prom-client's default metrics (process_*, nodejs_*: CPU, memory, heap spaces,
 * event-loop lag percentiles, GC, handles) and tidings_build_info, once per
 * process: they describe the process, not a server, and each collector keeps a
 * sampler running (an event-loop histogram, a GC observer) that one server per
 * test must not multiply.
 */
function processRegistry(): Registry {
  if (shared !== null) return shared;
  shared = new Registry();
  collectDefaultMetrics({ register: shared });
  new Gauge({
    name: 'tidings_build_info', help: 'Always 1; the labels say what runs', labelNames: ['version', 'node'] as const, registers: [shared],
    collect() {
      this.reset();
      this.set({ version: buildVersion, node: process.versions.node }, 1);
    },
  });
  return shared;
}
