// CONTRACT: what the HTTP side (http/*) and the WebSocket side (gateway, hub,
// connection) share. server.ts builds one of these and hands it to both.
import type { Logger } from 'pino';
import type { Config } from './config.js';
import type { Bus, StoredEvent } from './pubsub/bus.js';
import type { Metrics } from './metrics.js';
import type { Backlog } from './pubsub/backlog.js';

export interface ServerContext {
  config: Config;
  bus: Bus;
  log: Logger;
  metrics: Metrics;
  /** True from the start of a drain: /healthz answers 503, new upgrades and polls get 503. */
  draining: boolean;
  /** Demo/test controls, used by the demo-only routes (server/http/demo.ts). */
  control: {
    /** Close every WebSocket connection with `code` (1011 by default), or destroy sockets abruptly if code is 0. */
    dropAll(code?: number): number;
    /** While true, every WebSocket upgrade is answered 503 (lets the demo and e2e force the polling fallback). */
    blockUpgrades: boolean;
    /** While true, nothing at all is sent on WebSocket connections (no pings, no events), and
     *  nothing is closed: a silent "zombie" connection for testing the client's watchdog. */
    frozen: boolean;
    /** Number of open WebSocket connections. */
    connections(): number;
  };
  /** The WebSocket fan-out queue's backlog (publish admission, /readyz). Absent: no fan-out here (HTTP-only tests). */
  fanout?: () => Backlog;
  /** Register a live-event listener besides the hub (long-poll waiters use it). Returns an unsubscribe function. */
  onLiveEvent(listener: (event: StoredEvent) => void): () => void;
}
