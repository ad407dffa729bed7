// Probes and metrics: GET /livez, /readyz, /healthz (load balancers, Kubernetes)
// and GET /metrics (Prometheus).
//
// Three probes because they answer three questions, and using the wrong one
// costs: a liveness probe that fails during a Redis blip restarts every pod at
// once; a readiness probe that ignores the drain sends traffic to a node that
// is leaving.
//   /livez   the process answers: 200 always (while draining too).
//   /readyz  send it work: 503 while draining, while the bus does not answer a
//            PING within READY_PING_TIMEOUT_MS (a Redis that is down, or frozen:
//            its TCP connection stays up), or while the event loop lags past
//            TIDINGS_READY_MAX_LAG_MS, or while the fan-out queue is past
//            TIDINGS_MAX_FANOUT_LAG_MS / _QUEUE_BYTES (publishes get 503 then).
//   /healthz PROTOCOL.md's meaning: 200 while the server accepts work, 503 while
//            draining. A bus outage does not make it 503 (the node still serves
//            WebSockets and long-polls already subscribed), it says so in the text.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ServerContext } from '../context.js';
import { fanoutBehind } from '../pubsub/backlog.js';

/** How long /readyz waits for the bus to answer PING. A frozen Redis never answers. */
export const READY_PING_TIMEOUT_MS = 1_000;

export type Probe = 'livez' | 'readyz' | 'healthz';

export interface ProbeResult {
  status: 200 | 503;
  text: string;
}

type ProbeCtx = Pick<ServerContext, 'draining' | 'bus' | 'config' | 'metrics' | 'fanout'>;

/** /healthz, synchronous: draining is the only 503. */
export function healthStatus(ctx: Pick<ServerContext, 'draining' | 'bus'>): ProbeResult {
  if (ctx.draining) return { status: 503, text: 'draining' };
  if (ctx.bus.health() === 'degraded') return { status: 200, text: 'ok (bus unreachable)' };
  return { status: 200, text: 'ok' };
}

/** /readyz: the first reason not to send this node work, or ok. */
export async function readiness(ctx: ProbeCtx): Promise<ProbeResult> {
  if (ctx.draining) return { status: 503, text: 'draining' };
  if (ctx.bus.health() === 'degraded') return { status: 503, text: 'bus unreachable' };
  if (ctx.bus.ping !== undefined && !(await ctx.bus.ping(READY_PING_TIMEOUT_MS))) {
    return { status: 503, text: `bus did not answer within ${READY_PING_TIMEOUT_MS} ms` };
  }
  // Read after the await: the drain may have started meanwhile.
  if (ctx.draining) return { status: 503, text: 'draining' };
  const behind = ctx.fanout === undefined ? null : fanoutBehind(ctx.fanout(), ctx.config);
  if (behind !== null) return { status: 503, text: `fanout_behind: ${behind}` };
  const lag = ctx.metrics.eventLoopLagMs();
  if (lag > ctx.config.readyMaxLagMs) return { status: 503, text: `event loop lagging (p99 ${Math.round(lag)} ms)` };
  return { status: 200, text: 'ok' };
}

export function probeStatus(probe: Probe, ctx: ProbeCtx): ProbeResult | Promise<ProbeResult> {
  switch (probe) {
    case 'livez': return { status: 200, text: ctx.draining ? 'ok (draining)' : 'ok' };
    case 'healthz': return healthStatus(ctx);
    case 'readyz': return readiness(ctx);
  }
}

/** Answer a probe; Retry-After while draining tells a load balancer the node is going away on purpose. */
export function handleProbe(probe: Probe, req: IncomingMessage, res: ServerResponse, ctx: ServerContext): void | Promise<void> {
  const r = probeStatus(probe, ctx);
  if (r instanceof Promise) return r.then((x) => writeProbe(x, req, res, ctx));
  writeProbe(r, req, res, ctx);
}

function writeProbe({ status, text }: ProbeResult, req: IncomingMessage, res: ServerResponse, ctx: ServerContext): void {
  if (res.destroyed) return;
  const body = text + '\n';
  const headers: Record<string, string> = {
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': String(Buffer.byteLength(body)),
    'Cache-Control': 'no-store',
  };
  if (status === 503 && ctx.draining) headers['Retry-After'] = String(Math.max(1, Math.ceil(ctx.config.drainWindowMs / 1000)));
  res.writeHead(status, headers);
  res.end(req.method === 'HEAD' ? undefined : body);
}

export async function handleMetrics(_req: IncomingMessage, res: ServerResponse, ctx: ServerContext): Promise<void> {
  const text = await ctx.metrics.render();
  res.writeHead(200, {
    'Content-Type': ctx.metrics.contentType,
    'Content-Length': String(Buffer.byteLength(text)),
    'Cache-Control': 'no-store',
  });
  res.end(text);
}
