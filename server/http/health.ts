// GET /healthz and GET /metrics: for load balancers and Prometheus.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ServerContext } from '../context.js';

/** 200 "ok" while we accept work; 503 with the reason while draining or while the bus is degraded. */
export function healthStatus(ctx: Pick<ServerContext, 'draining' | 'bus'>): { status: 200 | 503; text: string } {
  if (ctx.draining) return { status: 503, text: 'draining' };
  if (ctx.bus.health() === 'degraded') return { status: 503, text: 'bus degraded' };
  return { status: 200, text: 'ok' };
}

export function handleHealth(req: IncomingMessage, res: ServerResponse, ctx: ServerContext): void {
  const { status, text } = healthStatus(ctx);
  const body = text + '\n';
  res.writeHead(status, {
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': String(Buffer.byteLength(body)),
    'Cache-Control': 'no-store',
  });
  res.end(req.method === 'HEAD' ? undefined : body);
}

export async function handleMetrics(_req: IncomingMessage, res: ServerResponse, ctx: ServerContext): Promise<void> {
  const text = await ctx.metrics.registry.metrics();
  res.writeHead(200, {
    'Content-Type': ctx.metrics.registry.contentType,
    'Content-Length': String(Buffer.byteLength(text)),
    'Cache-Control': 'no-store',
  });
  res.end(text);
}
