// The demo-only HTTP routes (served only with --demo / TIDINGS_DEMO): the demo
// page, the built SDK, and a few endpoints a page may call to mint a token,
// send itself mail and break its own connection. Never mounted otherwise: they
// hand out tokens to anyone who asks.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ServerContext } from '../context.js';
import { signSubscriberToken } from '../auth/tokens.js';
import { publisherKeysOf, subscriberKeyring } from '../config.js';
import { publisherKeyMatches } from '../http/publish.js';
import { bearerToken } from '../http/poll.js';
import { ASSETS, readAsset } from './assets.js';
import { Inboxes } from './inbox.js';
import {
  DemoError,
  channelOf,
  parseAction,
  parseDropCode,
  parseSubject,
  parseTtl,
  parseUser,
  parseChannels,
} from './params.js';

interface DemoState {
  inboxes: Inboxes;
  sent: number;
}

// One state per server context (tests build several contexts in one process).
const states = new WeakMap<ServerContext, DemoState>();
function stateOf(ctx: ServerContext): DemoState {
  let s = states.get(ctx);
  if (!s) {
    s = { inboxes: new Inboxes(ctx.bus), sent: 0 };
    states.set(ctx, s);
  }
  return s;
}

type Handler = (q: URLSearchParams, ctx: ServerContext, res: ServerResponse) => Promise<void>;
interface Route {
  method: 'GET' | 'POST';
  handle: Handler;
}

const ROUTES: Readonly<Record<string, Route>> = {
  '/demo/token': { method: 'GET', handle: token },
  '/demo/inbox': { method: 'GET', handle: inbox },
  '/demo/send': { method: 'POST', handle: send },
  '/demo/simulate': { method: 'POST', handle: simulate },
};

/**
 * Answer the request if it is one of ours, else return false untouched so the
 * router carries on. Synchronous by contract; async work runs inside and
 * always ends the response (errors become JSON, never a crash).
 */
export function routeDemo(req: IncomingMessage, res: ServerResponse, ctx: ServerContext): boolean {
  // Split the request target by hand (RFC 9112 §3.2.1 origin-form): `new URL`
  // would read `//host/x` as an authority and throws on some targets.
  const target = req.url ?? '/';
  const qmark = target.indexOf('?');
  const path = qmark < 0 ? target : target.slice(0, qmark);
  const query = new URLSearchParams(qmark < 0 ? '' : target.slice(qmark + 1));
  const asset = ASSETS[path];
  const route = ROUTES[path];
  if (!asset && !route && !path.startsWith('/demo/')) return false;

  const work = async (): Promise<void> => {
    if (req.method === 'OPTIONS') return preflight(res);
    if (asset) {
      if (req.method !== 'GET' && req.method !== 'HEAD') throw new DemoError('method_not_allowed', `${path} accepts GET`);
      return serveAsset(asset, req.method === 'HEAD', res);
    }
    if (!route) throw new DemoError('not_found', `no demo route ${path}`);
    // The controls mint tokens and drop every client: never for the network at large,
    // even when --demo reached a public server by mistake. The page and the SDK stay public.
    if (!isLoopback(req.socket.remoteAddress) && !publisherKeyMatches(bearerToken(req.headers.authorization), publisherKeysOf(ctx.config))) {
      throw new DemoError('forbidden', `${path} answers loopback clients only (or requests with Authorization: Bearer <publisher key>): demo controls are not for production`);
    }
    if (req.method !== route.method) {
      res.setHeader('Allow', route.method);
      throw new DemoError('method_not_allowed', `${path} accepts ${route.method}`);
    }
    return route.handle(query, ctx, res);
  };
  // The demo routes read no request body: drain it so keep-alive stays usable.
  req.resume();
  work().catch((err: unknown) => fail(res, err, ctx));
  return true;
}

/** 127.0.0.0/8, ::1, and IPv4 loopback as an IPv6-mapped address. The socket's address, never a header. */
export function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  return v4.startsWith('127.') || address === '::1';
}

async function serveAsset(asset: (typeof ASSETS)[string], head: boolean, res: ServerResponse): Promise<void> {
  const body = await readAsset(asset);
  if (!body) {
    if (asset.built) throw new DemoError('not_built', `${asset.file} is missing: run npm run build`);
    throw new DemoError('not_found', `${asset.file} is missing`);
  }
  res.writeHead(200, {
    'Content-Type': asset.type,
    'Content-Length': body.length,
    // RFC 9111 §5.2.2.4: revalidate every time; the SDK may be rebuilt under a running demo.
    'Cache-Control': 'no-cache',
    // The ESM e2e page is served from another origin and may load the SDK from here.
    'Access-Control-Allow-Origin': '*',
  });
  res.end(head ? undefined : body);
}

/** GET /demo/token?user=<id>&ttl=<s>&channels=<a,b> → {token, channel, user, channels}. The secret stays on the server. */
async function token(q: URLSearchParams, ctx: ServerContext, res: ServerResponse): Promise<void> {
  const user = parseUser(q);
  const ttlSeconds = parseTtl(q);
  const channel = channelOf(user);
  const channels = parseChannels(q, user, ctx.config.maxChannels);
  await stateOf(ctx).inboxes.open(channel);
  let jwt: string;
  try {
    jwt = await signSubscriberToken(subscriberKeyring(ctx.config), { sub: user, ch: channels, ttlSeconds });
  } catch (err) {
    throw new DemoError('token_failed', `could not sign a token: ${(err as Error).message}`);
  }
  json(res, 200, { token: jwt, channel, user, channels });
}

/** GET /demo/inbox?user=<id> → {channel, mails:[{cursor, data}]} oldest first. */
async function inbox(q: URLSearchParams, ctx: ServerContext, res: ServerResponse): Promise<void> {
  const channel = channelOf(parseUser(q));
  const mails = await stateOf(ctx).inboxes.list(channel);
  json(res, 200, { channel, mails });
}

/** POST /demo/send?user=<id>[&subject=…] → {channel, cursor}: one mail to the page's own channel. */
async function send(q: URLSearchParams, ctx: ServerContext, res: ServerResponse): Promise<void> {
  const channel = channelOf(parseUser(q));
  const state = stateOf(ctx);
  const subject = parseSubject(q, `Test mail #${state.sent + 1}`);
  state.sent++;
  const data = { from: 'demo@tidings', subject, at: Date.now() };
  let cursor: string;
  try {
    [cursor] = (await ctx.bus.publish([{ channel, json: JSON.stringify(data) }])) as [string];
  } catch (err) {
    throw new DemoError('publish_failed', `publish failed: ${(err as Error).message}`);
  }
  json(res, 200, { channel, cursor });
}

/** POST /demo/simulate?action=drop|block-ws|unblock-ws|freeze|unfreeze[&code=N] */
async function simulate(q: URLSearchParams, ctx: ServerContext, res: ServerResponse): Promise<void> {
  const action = parseAction(q);
  const c = ctx.control;
  let dropped: number | undefined;
  switch (action) {
    case 'drop':
      dropped = c.dropAll(parseDropCode(q));
      break;
    case 'block-ws':
      c.blockUpgrades = true;
      break;
    case 'unblock-ws':
      c.blockUpgrades = false;
      break;
    case 'freeze':
      c.frozen = true;
      break;
    case 'unfreeze':
      // A frozen connection swallowed what it did not send (events, pings, a welcome): left open, a client that
      // has not noticed the silence yet would go on from after a gap. It ends as a dead path's TCP connection
      // finally does, abruptly: its client reconnects, and the server replays what it missed.
      if (c.frozen) dropped = c.dropAll(0);
      c.frozen = false;
      break;
  }
  ctx.log.info({ action, dropped }, 'demo simulate');
  json(res, 200, { action, dropped, blockUpgrades: c.blockUpgrades, frozen: c.frozen, connections: c.connections() });
}

function preflight(res: ServerResponse): void {
  // Fetch spec CORS preflight: the demo routes take no credentials and no custom headers.
  res.writeHead(204, {
    'Access-Control-Allow-Origin': '*',
    'Access-Control-Allow-Methods': 'GET, POST',
    'Access-Control-Max-Age': '600',
  });
  res.end();
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    'Cache-Control': 'no-store',
    'Access-Control-Allow-Origin': '*',
  });
  res.end(text);
}

function fail(res: ServerResponse, err: unknown, ctx: ServerContext): void {
  const known = err instanceof DemoError;
  if (!known) ctx.log.error({ err }, 'demo route failed');
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const status = known ? err.status : 500;
  const code = known ? err.code : 'internal';
  const message = known ? err.message : 'internal error';
  json(res, status, { error: code, message });
}
