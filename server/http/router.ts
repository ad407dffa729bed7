// Every plain HTTP request, and every upgrade that is not for /v1/ws, lands here.
import { ServerResponse, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ServerContext } from '../context.js';
import { corsFor, preflightHeaders } from './cors.js';
import { handleDemo } from './demo.js';
import { HttpError, sendError } from './errors.js';
import { handleMetrics, handleProbe } from './health.js';
import { HeldPolls } from './held-polls.js';
import { SharedReads } from './shared-reads.js';
import { handlePoll, pollCommonHeaders } from './poll.js';
import { handlePublish } from './publish.js';

export interface HttpHandlerOptions {
  /** Clock for long-poll deadlines. @default Date.now */
  now?: () => number;
  /** Long-poll sweep period in ms; 0 = none (tests call `held.sweep()`). @default 500 */
  sweepIntervalMs?: number;
  /** Random source for the draining Retry-After spread. @default Math.random */
  random?: () => number;
  /** Bytes of messages per poll answer (poll.ts POLL_BUDGET_BYTES). @default 1 MiB */
  pollBudgetBytes?: number;
}

export interface HttpHandler {
  (req: IncomingMessage, res: ServerResponse): void;
  /**
   * For node:http's 'upgrade' event on a request that is not a WebSocket upgrade
   * of ours. Only runtimes without http's shouldUpgradeCallback (Node < 22.21 / 24.9)
   * get here: the request is served as the plain HTTP/1.1 request it also is, then
   * the connection closes (node:http no longer parses that socket).
   */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** The held long-polls (tests drive `sweep()` with a fake clock). */
  readonly held: HeldPolls;
  /** Answer every held long-poll now (304, or 200 if news came), then stop the sweep and the live-event listener. */
  close(): void;
}

/** Methods each route answers; anything else gets 405 with Allow. A Map, as pathOf
 *  looks raw request targets up in it: they must never find Object.prototype's keys. */
const ROUTES = new Map<string, readonly string[]>([
  ['/v1/poll', ['GET', 'OPTIONS']],
  ['/v1/publish', ['POST', 'OPTIONS']],
  ['/healthz', ['GET', 'HEAD']],
  ['/livez', ['GET', 'HEAD']],
  ['/readyz', ['GET', 'HEAD']],
  ['/metrics', ['GET']],
]);
/** Routes browsers call cross-origin: CORS headers and the Origin allow-list apply. */
const CORS_ROUTES = new Set(['/v1/poll', '/v1/publish']);

// A query of only these characters has nothing to decode ('%', '+'), no fragment
// ('#') and nothing the URL parser would re-encode or strip: URLSearchParams would
// read it exactly as split('&') and split at the first '=' do.
const PLAIN_QUERY = /^[A-Za-z0-9:_.,=&~-]*$/;

const POLL_QUERY = '/v1/poll?';


/** What `new URL(target).searchParams.getAll('channels').join(',')` gives, without the URL when it can. */
export function channelsParam(target: string): string {
  if (target === '/v1/poll') return '';
  const query = target.startsWith(POLL_QUERY) ? target.slice(POLL_QUERY.length) : null;
  if (query === null || !PLAIN_QUERY.test(query)) {
    // A path the URL parser normalized, or a query with escapes: let it read the query.
    try {
      return new URL(target, 'http://localhost').searchParams.getAll('channels').join(',');
    } catch {
      throw new HttpError('bad_request', 'unreadable request target');
    }
  }
  // The SDK's own request: "channels=a,b" and nothing else.
  if (query.startsWith('channels=') && !query.includes('&')) return query.slice(9);
  const values: string[] = [];
  for (const pair of query.split('&')) {
    const eq = pair.indexOf('=');
    if ((eq < 0 ? pair : pair.slice(0, eq)) === 'channels') values.push(eq < 0 ? '' : pair.slice(eq + 1));
  }
  return values.join(',');
}

/**
 * The path of a request target as `new URL(target).pathname` reads it. A target
 * whose part before "?" is one of our routes as it stands is taken as is (the URL
 * parser would not change it: no dot segments, escapes or fragment); any other
 * goes through the URL parser, which normalizes it.
 */
function pathOf(target: string): string {
  const q = target.indexOf('?');
  const raw = q < 0 ? target : target.slice(0, q);
  if (ROUTES.has(raw) || raw === '/v1/ws') return raw;
  try {
    return new URL(target, 'http://localhost').pathname;
  } catch {
    throw new HttpError('bad_request', 'unreadable request target');
  }
}

/** Retry-After while draining: the drain window, in seconds (at least 1). */
function drainRetryAfterS(ctx: ServerContext): number {
  return Math.max(1, Math.ceil(ctx.config.drainWindowMs / 1000));
}

export function createHttpHandler(ctx: ServerContext, opts: HttpHandlerOptions = {}): HttpHandler {
  const held = new HeldPolls(ctx.bus, {
    now: opts.now,
    sweepIntervalMs: opts.sweepIntervalMs,
    isDraining: () => ctx.draining,
    onSize: (n) => ctx.metrics.heldPolls.set(n),
  });
  // Reads of woken long-polls are shared (shared-reads.ts); an event first drops its channel's reads in flight.
  const reads = new SharedReads(ctx.bus);
  const stopListening = ctx.onLiveEvent((e) => {
    reads.invalidate(e.channel);
    held.onEvent(e);
  });
  const pollDeps = { ctx, held, reads, random: opts.random, budget: opts.pollBudgetBytes };

  const fail = (res: ServerResponse, err: unknown) => {
    if (err instanceof HttpError) return sendError(res, err);
    ctx.log.error({ err }, 'http handler failed');
    sendError(res, new HttpError('internal', 'internal error'));
  };

  // PROTOCOL.md: every poll response carries these, the router's own errors (403 origin, 405) too.
  // Only errors and preflights need them here; handlePoll writes its own in one go.
  const pollHeaders = (more: Readonly<Record<string, string>>) => ({ ...pollCommonHeaders(ctx, held), ...more });

  const handler = ((req: IncomingMessage, res: ServerResponse) => {
    try {
      route(req, res);
    } catch (err) {
      fail(res, err);
    }
  }) as HttpHandler;

  function route(req: IncomingMessage, res: ServerResponse): void {
    if (ctx.config.demo && handleDemo(req, res, ctx)) return;
    const target = req.url ?? '/';
    const path = pathOf(target);
    const method = req.method ?? 'GET';
    // Leaving: no keep-alive, so clients and proxies open their next connection elsewhere.
    if (ctx.draining) res.shouldKeepAlive = false;

    if (path === '/v1/ws') {
      // The handshake is a GET (RFC 6455 §4.1): any other method is 405. A GET
      // that reached node:http (the gateway parses `GET /v1/ws` itself, so only
      // an unusual spelling of the path does) gets 426, which names the protocol
      // to switch to (RFC 9110 §15.5.22).
      if (method !== 'GET') throw new HttpError('method_not_allowed', `${method} not allowed on /v1/ws: open a WebSocket with GET`, { Allow: 'GET' });
      throw new HttpError('upgrade_required', 'GET /v1/ws needs a WebSocket upgrade', { Upgrade: 'websocket', Connection: 'Upgrade' });
    }
    const methods = ROUTES.get(path);
    if (!methods) throw new HttpError('not_found', `no route for ${path}`);
    const poll = path === '/v1/poll';

    let cors: Readonly<Record<string, string>> | null = null;
    if (CORS_ROUTES.has(path)) {
      const origin = req.headers.origin;
      const decision = corsFor(origin, ctx.config.allowedOrigins);
      if (decision.kind === 'forbidden') {
        throw new HttpError('origin_forbidden', 'Origin not allowed', poll ? pollHeaders(decision.headers) : decision.headers);
      }
      if (method === 'OPTIONS') {
        const isPreflight = origin !== undefined && req.headers['access-control-request-method'] !== undefined;
        const headers = isPreflight ? preflightHeaders(origin!) : { Allow: methods.join(', '), Vary: 'Origin' };
        res.writeHead(204, poll ? pollHeaders(headers) : headers);
        res.end();
        return;
      }
      cors = decision.headers;
      // handlePoll adds them to each of its answers; other routes get them now.
      if (!poll) for (const k of Object.keys(cors)) res.setHeader(k, cors[k]!);
    }
    if (!methods.includes(method)) {
      const allow = { Allow: methods.join(', ') };
      throw new HttpError('method_not_allowed', `${method} not allowed on ${path}`, poll ? pollHeaders({ ...cors, ...allow }) : allow);
    }

    switch (path) {
      case '/v1/poll':
        return handlePoll(req, res, channelsParam(target), cors!, pollDeps);
      case '/v1/publish':
        // A node going away takes no new events: the publisher retries on another one.
        if (ctx.draining) throw new HttpError('draining', 'server is draining; retry on another node or later', { 'Retry-After': String(drainRetryAfterS(ctx)) });
        void handlePublish(req, res, ctx).catch((err) => fail(res, err));
        return;
      case '/healthz':
      case '/livez':
      case '/readyz':
        void Promise.resolve(handleProbe(path.slice(1) as 'healthz' | 'livez' | 'readyz', req, res, ctx)).catch((err) => fail(res, err));
        return;
      case '/metrics':
        // With TIDINGS_METRICS_PORT, only that listener serves them.
        if (ctx.config.metricsPort > 0) throw new HttpError('not_found', 'metrics are served on TIDINGS_METRICS_PORT');
        void handleMetrics(req, res, ctx).catch((err) => fail(res, err));
        return;
    }
  }

  handler.upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    // The socket may already be gone; an 'error' with no listener would crash the process.
    socket.on('error', () => socket.destroy());
    // A body that came with the head is already read: give it back to the request stream.
    if (head.length > 0) req.unshift(head);
    const res = new ServerResponse(req);
    res.shouldKeepAlive = false;
    res.assignSocket(socket as Socket);
    res.on('finish', () => {
      res.detachSocket(socket as Socket);
      socket.end();
    });
    handler(req, res);
  };
  Object.defineProperty(handler, 'held', { value: held });
  handler.close = () => {
    held.releaseAll();
    stopListening();
  };
  return handler;
}
