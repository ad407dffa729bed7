// Composition: config -> bus, logger, metrics, context, HTTP handler, hub,
// timer wheel, gateway. Nothing here parses or frames; it only wires modules
// together and owns the lifecycle (listen, drain, close).
import http from 'node:http';
import type { AddressInfo, Server as NetServer } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { Config } from './config.js';
import type { ServerContext } from './context.js';
import { createLogger } from './log.js';
import { createMetrics, type Metrics } from './metrics.js';
import { normalizeAllowedOrigins } from './config-checks.js';
import { Gauge } from 'prom-client';
import { handleMetrics } from './http/health.js';
import { BusUnavailableError, type Bus, type StoredEvent } from './pubsub/bus.js';
import { MemoryBus } from './pubsub/memory-bus.js';
import { Hub } from './pubsub/hub.js';
import { TimerWheel } from './timer-wheel.js';
import { createHttpHandler, type HttpHandler } from './http/router.js';
import { acceptHttpUpgrade, createGateway, isWsUpgrade } from './gateway.js';
import { RateLimitedLog, SourceHeads } from './admission.js';
import { CLOSE_GRACE_MS, Connection, closeAll, deliver, type Runtime } from './ws/connection.js';
import { onDue } from './ws/session.js';

/** After drain has closed everything, sockets still open this long are destroyed. */
export const DRAIN_HARD_CAP_MS = CLOSE_GRACE_MS + 3_000;

/** How often node:http looks for request heads past their deadline: a slow head lives at most this much longer. */
export const HTTP_HEAD_CHECK_MS = 1_000;

export interface ServerOptions {
  /** A bus of your own (tests, embedding). @default MemoryBus, or RedisBus when config.redisUrl is set */
  bus?: Bus;
  /** @default a pino logger at config.logLevel on stdout */
  log?: Logger;
  /** @default createMetrics() */
  metrics?: Metrics;
  /** The timer wheel's clock; tests pass a fake one and call `wheel.advance()`. @default ms since the server was created */
  now?: () => number;
  /** Timer wheel resolution. @default derived from the shortest deadline, 10..1000 ms */
  tickMs?: number;
  /** Passed to the HTTP handler (long-poll sweep etc.). */
  httpOptions?: Parameters<typeof createHttpHandler>[1];
  /** How the gateway binds: a cluster worker's own SO_REUSEPORT socket (cluster.ts listenOptions). @default config.port, not shared */
  listen?: { port: number; reusePort: boolean; exclusive: boolean };
}

export interface TidingsServer {
  listen(): Promise<{ host: string; port: number }>;
  /** Stop accepting, close every WebSocket 1012 (reason = window ms), end held polls, close the bus. */
  drain(windowMs?: number, listenMs?: number): Promise<void>;
  /** Immediate stop: destroy every socket, close the bus. */
  close(): Promise<void>;
  readonly ctx: ServerContext;
  readonly wheel: TimerWheel<Connection>;
  readonly hub: Hub<Connection>;
  readonly runtime: Runtime;
  /** Where /metrics listens when config.metricsPort is set (after listen()), else null. */
  metricsAddress(): { host: string; port: number } | null;
}

/** Until listen() has connected the Redis bus: every call fails as "unavailable". */
function pendingBus(): Bus {
  const no = () => Promise.reject(new BusUnavailableError('bus not connected yet'));
  return {
    publish: no, head: no, readAfter: no, isAfter: () => false, watch() {}, unwatch() {},
    onEvent: null, onGap: null, health: () => 'degraded', ping: async () => false, close: async () => {},
  };
}

function withNormalizedOrigins(config: Config, warn: (message: string) => void): Config {
  if (config.allowedOrigins.length === 0) return config;
  const { origins, warnings } = normalizeAllowedOrigins(config.allowedOrigins);
  if (warnings.length === 0 && origins.length === config.allowedOrigins.length) return config;
  for (const w of warnings) warn(w);
  return { ...config, allowedOrigins: origins };
}

/** Deadlines fire up to one tick late: a tenth of the shortest one keeps that under 10%. */
function tickFor(config: Config): number {
  const shortest = Math.min(config.pingMs, config.pongGraceMs, config.helloTimeoutMs);
  return Math.max(10, Math.min(1000, Math.floor(shortest / 10)));
}

export function createTidingsServer(given: Config, opts: ServerOptions = {}): TidingsServer {
  const log = opts.log ?? createLogger({ level: given.logLevel });
  // The handshake compares Origin exactly; an embedder's config did not go through
  // loadConfig, so its allow-list gets the same normalisation here.
  const config = withNormalizedOrigins(given, (w) => log.warn(w));
  const metrics = opts.metrics ?? createMetrics();
  // Connection state of the bus, read at scrape time (one gauge per registry: a test may share one).
  if (metrics.registry.getSingleMetric('tidings_bus_up') === undefined) {
    new Gauge({
      name: 'tidings_bus_up', help: '1 while the bus (Redis) is connected, 0 during an outage', registers: [metrics.registry],
      collect() { this.set(ctx.bus.health() === 'ok' ? 1 : 0); },
    });
  }
  const liveListeners = new Set<(e: StoredEvent) => void>();
  const useRedis = !opts.bus && (config.redisUrl !== '' || config.redisCluster.length > 0);
  let bus: Bus = opts.bus ?? (useRedis ? pendingBus() : new MemoryBus({ history: config.history }));

  const ctx: ServerContext = {
    config,
    bus,
    log,
    metrics,
    draining: false,
    control: {
      dropAll: (code = 1011) => closeAll(runtime, code, code === 0 ? '' : 'dropped'),
      blockUpgrades: false,
      frozen: false,
      connections: () => runtime.conns.size,
    },
    fanout: () => hub.backlog(),
    onLiveEvent(listener) {
      liveListeners.add(listener);
      return () => { liveListeners.delete(listener); };
    },
  };

  // Default clock: ms since this server started. Deadlines then stay small
  // integers (V8 Smis) for 24 days instead of boxed doubles: 16 bytes less per
  // connection in `due`.
  const startedAt = Date.now();
  const wheel = new TimerWheel<Connection>(opts.tickMs ?? tickFor(config), onDue, opts.now ?? (() => Date.now() - startedAt));
  // The hub reaches the bus through ctx, which listen() may still swap for the Redis bus.
  const hub = new Hub<Connection>({ watch: (ch) => ctx.bus.watch(ch), unwatch: (ch) => ctx.bus.unwatch(ch) }, deliver, {
    slice: config.fanoutSlice,
    sliceMs: config.fanoutSliceMs,
    batch: config.fanoutBatch,
    onWritten: (n, bytes) => { metrics.messagesOut.inc(n); metrics.bytesOut.inc(bytes); },
  });
  // A request head on the HTTP path gets the same deadline as a WebSocket head
  // (node:http's default is 60 s, checked every 30 s: a slowloris held sockets
  // for up to 90 s). node answers 408 and closes. Requests with an Upgrade
  // header that is not our WebSocket are plain requests (h2c on /healthz); only
  // GET /v1/ws reaches the 'upgrade' event.
  metrics.fanoutSource = () => (ctx.fanout ?? (() => hub.backlog()))();
  const httpServer = http.createServer({
    shouldUpgradeCallback: isWsUpgrade,
    headersTimeout: config.helloTimeoutMs,
    // node refuses a head deadline past the request deadline (300 s by default).
    requestTimeout: Math.max(300_000, config.helloTimeoutMs),
    connectionsCheckingInterval: HTTP_HEAD_CHECK_MS,
  });
  // node:http never listens itself (the gateway owns the port), but its connection
  // tracking starts on 'listening': without it headersTimeout/requestTimeout are
  // not enforced on handed-off sockets and closeIdleConnections() finds nothing.
  httpServer.emit('listening');
  const runtime: Runtime = {
    ctx, config, hub, wheel, now: wheel.now, httpServer, conns: new Set(), handshakes: 0, heads: new Set(),
    sockets: 0, sources: new SourceHeads<Connection>(), refusedLog: new RateLimitedLog(10_000), replayBytes: 0,
  };
  const gateway: NetServer = createGateway(runtime);
  let handler: HttpHandler | null = null;
  let needRedis = useRedis;

  function wireBus(b: Bus): void {
    bus = b;
    ctx.bus = b;
    b.onEvent = (e) => {
      hub.onEvent(e);
      for (const l of liveListeners) l(e);
    };
    b.onGap = (channel, head) => hub.onGap(channel, head);
  }
  wireBus(bus);

  let listening = false;
  let closed = false;
  let closing = false;

  async function listen(): Promise<{ host: string; port: number }> {
    if (needRedis) {
      needRedis = false;
      let mod: { RedisBus: { fromConfig(config: Config, log: Logger): Promise<Bus> } };
      try {
        mod = (await import('./pubsub/redis-bus.js')) as unknown as typeof mod;
      } catch (err) {
        throw new Error(`TIDINGS_REDIS_URL or TIDINGS_REDIS_CLUSTER is set but the Redis bus is not available: ${(err as Error).message}`);
      }
      wireBus(await mod.RedisBus.fromConfig(config, log));
    }
    handler = createHttpHandler(ctx, opts.httpOptions);
    httpServer.on('request', handler);
    const plainUpgrade = handler.upgrade;
    httpServer.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      if (isWsUpgrade(req)) acceptHttpUpgrade(runtime, req, socket, head);
      else plainUpgrade(req, socket, head);
    });
    // node:http's own timeouts apply to handed-off sockets; its 'clientError'
    // default answers 400 and destroys, which is what we want.
    wheel.start();
    await new Promise<void>((resolve, reject) => {
      gateway.once('error', reject);
      const how = opts.listen ?? { port: config.port, reusePort: false, exclusive: false };
      gateway.listen({ port: how.port, host: config.host, backlog: config.listenBacklog, reusePort: how.reusePort, exclusive: how.exclusive }, () => {
        gateway.removeListener('error', reject);
        resolve();
      });
    });
    gateway.on('error', (err) => log.error({ err }, 'listener error'));
    if (config.metricsPort > 0) await listenMetrics();
    listening = true;
    const addr = gateway.address() as AddressInfo;
    return { host: addr.address, port: addr.port };
  }

  /**
   * TIDINGS_METRICS_PORT: /metrics on a listener of its own (a private address,
   * a port the Service does not expose), and not on the public port.
   */
  let metricsServer: http.Server | null = null;
  async function listenMetrics(): Promise<void> {
    const srv = http.createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (path === '/metrics' && (req.method === 'GET' || req.method === 'HEAD')) {
        void handleMetrics(req, res, ctx).catch((err) => { log.error({ err }, 'metrics failed'); res.destroy(); });
        return;
      }
      const body = JSON.stringify({ error: 'not_found', message: 'this port serves GET /metrics only' });
      res.writeHead(404, { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(body)) }).end(body);
    });
    await new Promise<void>((resolve, reject) => {
      srv.once('error', (err) => reject(new Error(`cannot listen on TIDINGS_METRICS_PORT ${config.metricsPort}: ${err.message}`)));
      srv.listen(config.metricsPort, config.metricsHost || config.host, () => resolve());
    });
    metricsServer = srv;
  }

  /** Resolves when the gateway has no socket left (node:http's handed-off sockets included), or after the cap. */
  function socketsGone(capMs: number): Promise<void> {
    return new Promise((resolve) => {
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        clearTimeout(cap);
        clearInterval(idle);
        resolve();
      };
      // Keep-alive sockets that finished their response close now; busy ones after it.
      const idle = setInterval(() => httpServer.closeIdleConnections(), 50);
      const cap = setTimeout(() => {
        // WebSockets, sockets still sending their request head (known only to the
        // gateway), and whatever node:http still holds.
        for (const c of runtime.conns) c.socket.destroy();
        for (const c of runtime.heads) c.socket.destroy();
        httpServer.closeAllConnections();
        setImmediate(finish);
      }, capMs);
      // The server's count drops in the socket's _destroy, before libuv has closed the
      // handle and the socket's 'close' (where connections are forgotten) has run.
      const whenForgotten = () => (runtime.conns.size === 0 ? finish() : void setTimeout(whenForgotten, 5));
      if (listening) gateway.close(whenForgotten);
      else finish();
      httpServer.closeIdleConnections();
    });
  }

  /**
   * Phase 1 (config.drainListenMs): still listening, answering 503 + Retry-After
   * to probes, polls, publishes and upgrades, so load balancers take the node out
   * of rotation on an answer instead of a refused connection; every WebSocket is
   * closed 1012 and held long-polls are answered at its start. Phase 2: the
   * listener closes and open sockets get DRAIN_HARD_CAP_MS to finish. Then the
   * bus closes. One log line per phase.
   */
  async function drain(windowMs = config.drainWindowMs, keepListeningMs = config.drainListenMs): Promise<void> {
    if (closed || ctx.draining) return;
    ctx.draining = true;
    const window = Math.max(0, Math.round(windowMs));
    const listenMs = listening ? Math.max(0, keepListeningMs) : 0;
    log.info({ phase: 'refusing', websockets: runtime.conns.size, windowMs: window, listenMs }, 'drain: closing WebSockets 1012, answering 503 while still listening');
    // PROTOCOL.md: 1012 with the reconnect window as a decimal number of ms.
    closeAll(runtime, 1012, String(window));
    // Held long-polls are answered now (draining makes the sweep release all of them).
    handler?.held.sweep();
    if (listenMs > 0) await new Promise((r) => setTimeout(r, listenMs));
    if (closed) return; // close() came during the listen phase and did the rest
    log.info({ phase: 'closing', websockets: runtime.conns.size, capMs: DRAIN_HARD_CAP_MS }, 'drain: listener closed, waiting for open sockets');
    await socketsGone(DRAIN_HARD_CAP_MS);
    await shutdown();
    log.info({ phase: 'done' }, 'drain: done');
  }

  async function close(): Promise<void> {
    if (closed || closing) return;
    closing = true;
    ctx.draining = true;
    const gone = socketsGone(0);
    closeAll(runtime, 0);
    await gone;
    await shutdown();
  }

  async function shutdown(): Promise<void> {
    if (closed) return;
    closed = true;
    wheel.stop();
    handler?.close();
    // Stops node:http's connection-checking interval (it never listened: no error to report).
    httpServer.close(() => {});
    metrics.close();
    if (metricsServer !== null) {
      metricsServer.closeAllConnections();
      metricsServer.close();
    }
    await bus.close();
  }

  const metricsAddress = () => {
    const a = metricsServer?.address();
    return a && typeof a === 'object' ? { host: a.address, port: a.port } : null;
  };
  return { listen, drain, close, ctx, wheel, hub, runtime, metricsAddress };
}
