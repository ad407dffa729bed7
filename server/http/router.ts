// Every plain HTTP request, and every upgrade that is not for /v1/ws, lands here.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ServerContext } from '../context.js';
import { corsFor, preflightHeaders } from './cors.js';
import { handleDemo } from './demo.js';
import { HttpError, sendError } from './errors.js';
import { handleHealth, handleMetrics } from './health.js';
import { HeldPolls } from './held-polls.js';
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
  /** For node:http's 'upgrade' event: answers 404 for any path but /v1/ws and closes; never leaves a socket hanging. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** The held long-polls (tests drive `sweep()` with a fake clock). */
  readonly held: HeldPolls;
  /** Answer every held long-poll now (304, or 200 if news came), then stop the sweep and the live-event listener. */
  close(): void;
}

/** Methods each route answers; anything else gets 405 with Allow. */
const ROUTES: Record<string, readonly string[]> = {
  '/v1/poll': ['GET', 'OPTIONS'],
  '/v1/publish': ['POST', 'OPTIONS'],
  '/healthz': ['GET', 'HEAD'],
  '/metrics': ['GET'],
};
/** Routes browsers call cross-origin: CORS headers and the Origin allow-list apply. */
const CORS_ROUTES = new Set(['/v1/poll', '/v1/publish']);

export function createHttpHandler(ctx: ServerContext, opts: HttpHandlerOptions = {}): HttpHandler {
  const held = new HeldPolls(ctx.bus, {
    now: opts.now,
    sweepIntervalMs: opts.sweepIntervalMs,
    isDraining: () => ctx.draining,
    onSize: (n) => ctx.metrics.heldPolls.set(n),
  });
  const stopListening = ctx.onLiveEvent((e) => held.onEvent(e));

  const fail = (res: ServerResponse, err: unknown) => {
    if (err instanceof HttpError) return sendError(res, err);
    ctx.log.error({ err }, 'http handler failed');
    sendError(res, new HttpError('internal', 'internal error'));
  };

  const handler = ((req: IncomingMessage, res: ServerResponse) => {
    try {
      route(req, res);
    } catch (err) {
      fail(res, err);
    }
  }) as HttpHandler;

  function route(req: IncomingMessage, res: ServerResponse): void {
    if (ctx.config.demo && handleDemo(req, res, ctx)) return;
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://localhost');
    } catch {
      throw new HttpError('bad_request', 'unreadable request target');
    }
    const path = url.pathname;
    const method = req.method ?? 'GET';

    if (path === '/v1/ws') {
      // A plain GET on the WebSocket path (RFC 9110 §15.5.22: 426 names the protocol to switch to).
      throw new HttpError('upgrade_required', 'GET /v1/ws needs a WebSocket upgrade', { Upgrade: 'websocket', Connection: 'Upgrade' });
    }
    const methods = ROUTES[path];
    if (!methods) throw new HttpError('not_found', `no route for ${path}`);
    // PROTOCOL.md: every poll response carries these, the router's own errors (403 origin, 405) too.
    if (path === '/v1/poll') for (const [k, v] of Object.entries(pollCommonHeaders(ctx, held))) res.setHeader(k, v);

    if (CORS_ROUTES.has(path)) {
      const origin = req.headers.origin;
      const cors = corsFor(origin, ctx.config.allowedOrigins);
      if (cors.kind === 'forbidden') {
        throw new HttpError('origin_forbidden', 'Origin not allowed', cors.headers);
      }
      if (method === 'OPTIONS') {
        const isPreflight = origin !== undefined && req.headers['access-control-request-method'] !== undefined;
        res.writeHead(204, isPreflight ? preflightHeaders(origin!) : { Allow: methods.join(', '), Vary: 'Origin' });
        res.end();
        return;
      }
      for (const [k, v] of Object.entries(cors.headers)) res.setHeader(k, v);
    }
    if (!methods.includes(method)) {
      throw new HttpError('method_not_allowed', `${method} not allowed on ${path}`, { Allow: methods.join(', ') });
    }

    switch (path) {
      case '/v1/poll':
        void handlePoll(req, res, url, { ctx, held, random: opts.random, budget: opts.pollBudgetBytes }).catch((err) => fail(res, err));
        return;
      case '/v1/publish':
        void handlePublish(req, res, ctx).catch((err) => fail(res, err));
        return;
      case '/healthz':
        return handleHealth(req, res, ctx);
      case '/metrics':
        void handleMetrics(req, res, ctx).catch((err) => fail(res, err));
        return;
    }
  }

  handler.upgrade = (req: IncomingMessage, socket: Duplex, _head: Buffer) => {
    // The socket may already be gone; an 'error' with no listener would crash the process.
    socket.on('error', () => socket.destroy());
    const path = (req.url ?? '/').split('?')[0];
    const status = path === '/v1/ws' ? '503 Service Unavailable\r\nRetry-After: 1' : '404 Not Found';
    socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  };
  Object.defineProperty(handler, 'held', { value: held });
  handler.close = () => {
    held.releaseAll();
    stopListening();
  };
  return handler;
}
