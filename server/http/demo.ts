import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ServerContext } from '../context.js';

export function handleDemo(_req: IncomingMessage, _res: ServerResponse, _ctx: ServerContext): boolean { return false; }
