// Router entry for the demo-only routes. The router calls this first, and only
// when ctx.config.demo is set; the routes themselves live in server/demo/.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ServerContext } from '../context.js';
import { routeDemo } from '../demo/routes.js';

/** True when the request was a demo route and has been (or is being) answered. */
export function handleDemo(req: IncomingMessage, res: ServerResponse, ctx: ServerContext): boolean {
  if (!ctx.config.demo) return false; // belt and braces: never mint tokens outside demo mode
  return routeDemo(req, res, ctx);
}
