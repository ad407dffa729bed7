// The net.Server that owns the port. The first bytes of each connection decide:
// `GET /v1/ws` becomes a WebSocket without ever building an IncomingMessage;
// anything else is handed, bytes and all, to a node:http server on the same
// socket. An upgrade that arrives later on such a keep-alive socket (a proxy
// reusing its upstream connections) comes back through node:http's 'upgrade'
// event and joins the same path (acceptHttpUpgrade). Listeners are module-level
// functions shared by every socket (no closure per connection); the connection
// object is found through a symbol.
import type { IncomingMessage } from 'node:http';
import net, { type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { HandshakeRejectReason } from './metrics.js';
import { admitSocket } from './admission.js';
import { sampled } from './ops-log.js';
import { HandshakeError, type HandshakeErrorCode } from './ws/errors.js';
import { WS_PATH, acceptResponse, parseUpgrade, rejectResponse, type UpgradeParse } from './ws/upgrade.js';
import {
  CLOSE_GRACE_MS, Connection, RETRY_AFTER_S, S_CLOSED, S_ENDED, S_HEAD, connOf, setState, tag, type Runtime,
} from './ws/connection.js';
import { startConnection } from './ws/session.js';

const REASON_OF: Record<HandshakeErrorCode, HandshakeRejectReason> = {
  MALFORMED_REQUEST: 'malformed',
  NOT_AN_UPGRADE: 'malformed',
  BAD_KEY: 'bad_key',
  BAD_VERSION: 'bad_version',
  HEAD_TOO_LARGE: 'head_too_large',
  ORIGIN_FORBIDDEN: 'origin',
  OVER_CAPACITY: 'over_capacity',
  NOT_FOUND: 'not_found',
};

/** The listening server. `rt.httpServer` receives every socket that is not a WebSocket upgrade. */
export function createGateway(rt: Runtime): net.Server {
  return net.createServer((socket) => accept(rt, socket));
}

/** One 'close' listener per server, shared by all its sockets: keeps rt.sockets in step. */
const closers = new WeakMap<Runtime, () => void>();
function closerOf(rt: Runtime): () => void {
  let f = closers.get(rt);
  if (f === undefined) {
    f = () => {
      rt.sockets--;
      rt.ctx.metrics.openSockets.dec();
    };
    closers.set(rt, f);
  }
  return f;
}

/**
 * A new TCP connection. One Connection object from the start: it carries the
 * head-read deadline on the shared wheel (slowloris), and is reused as is if the
 * socket becomes a WebSocket. The handshake window is config.helloTimeoutMs:
 * the head and the hello share one budget per phase.
 */
export function accept(rt: Runtime, socket: Socket): void {
  // Read once here: node caches the peer name, so it is still known after the socket closed.
  const source = socket.remoteAddress ?? '';
  const verdict = admitSocket(
    { sockets: rt.sockets, pendingHeads: rt.heads.size, fromSource: rt.sources.get(source) },
    rt.config,
  );
  if (verdict.kind === 'refuse') return refuseSocket(rt, socket, verdict.reason);
  if (verdict.evict === 'source') evictHead(rt, rt.sources.oldest(source), 'source');
  else if (verdict.evict === 'oldest') evictHead(rt, rt.heads.values().next().value, 'evicted');
  rt.sockets++;
  rt.ctx.metrics.openSockets.inc();
  // Stays through the hand-off to node:http and the upgrade: counts every socket until it is gone.
  socket.on('close', closerOf(rt));
  const c = adopt(rt, socket, source);
  socket.on('data', onHeadData);
  rt.wheel.schedule(c, rt.now() + verdict.headTimeoutMs);
}

function adopt(rt: Runtime, socket: Socket, source: string = socket.remoteAddress ?? ''): Connection {
  const c = new Connection(socket, rt);
  rt.handshakes++;
  rt.heads.add(c);
  rt.sources.add(source, c);
  tag(socket, c);
  socket.on('error', onHeadError);
  socket.on('close', onHeadClose);
  return c;
}

/**
 * A socket closed before anything was read: no answer is owed, and writing one
 * would cost what the budget is there to save. Past the socket budget the event
 * is logged (rate-limited) and counted, never silent.
 */
function refuseSocket(rt: Runtime, socket: Socket, reason: 'max_sockets'): void {
  rt.ctx.metrics.socketsRefused.inc({ reason });
  socket.on('error', onHeadError);
  socket.destroy();
  const suppressed = rt.refusedLog.tick();
  if (suppressed >= 0) {
    rt.ctx.log.warn(
      { sockets: rt.sockets, maxSockets: rt.config.maxSockets, suppressed },
      'socket budget reached (TIDINGS_MAX_SOCKETS): new connections are closed at once',
    );
  }
}

/**
 * A pending-head budget is full (all, or one address's): its oldest incomplete
 * head goes, not the newcomer (a real client's head is never the oldest).
 */
function evictHead(rt: Runtime, oldest: Connection | undefined, reason: 'evicted' | 'source'): void {
  if (oldest === undefined) return;
  rt.ctx.metrics.socketsRefused.inc({ reason });
  // Out of the budget now, not at the socket's 'close' (a later accept in this tick must see the room).
  setState(oldest, S_CLOSED);
  rt.wheel.cancel(oldest);
  oldest.spill = null;
  oldest.socket.destroy();
}

/**
 * The shouldUpgradeCallback of the node:http server: only `GET /v1/ws` is ours
 * to upgrade (whatever its Upgrade header says: parseUpgrade then answers it
 * exactly as on a fresh connection). Any other request that carries an Upgrade
 * header (h2c on /healthz, say) is served as the plain HTTP/1.1 request it also
 * is (RFC 9110 §7.8: a server may ignore Upgrade).
 */
export function isWsUpgrade(req: IncomingMessage): boolean {
  if (req.method !== 'GET') return false;
  const url = req.url ?? '';
  return url === WS_PATH || (url.startsWith(WS_PATH) && url.charCodeAt(WS_PATH.length) === 0x3f /* ? */);
}

/**
 * node:http's 'upgrade' event for `GET /v1/ws` on a socket it already served
 * (nginx with an upstream keepalive pool sends upgrades on reused connections).
 * node:http hands over the socket, detached from its parser, and `head`, the
 * bytes read past the request head. The request head is rebuilt from the raw
 * header lines and goes through the same parser and admission as on a fresh
 * connection, so both paths accept and refuse exactly the same requests; only
 * this path pays for the IncomingMessage and the rebuilt head.
 */
export function acceptHttpUpgrade(rt: Runtime, req: IncomingMessage, socket: Duplex, head: Buffer): void {
  // node:http's server sockets are net.Sockets; the type says Duplex for generality.
  const c = adopt(rt, socket as Socket);
  const requestHead = headOf(req);
  const buf = head.length > 0 ? Buffer.concat([requestHead, head]) : requestHead;
  let r: UpgradeParse;
  try {
    // node:http has already bounded the head (its maxHeaderSize); the rebuilt one may
    // differ by whitespace, so the limit is the larger of the two sizes.
    r = parseUpgrade(buf, Math.max(rt.config.maxHeadBytes, requestHead.length));
  } catch (err) {
    rt.ctx.log.error({ err }, 'upgrade parser failed');
    c.socket.destroy();
    return;
  }
  if (r.kind === 'incomplete' || r.kind === 'http') {
    // Cannot happen for a complete GET /v1/ws head; never leave the socket hanging if it does.
    return reject(c, new HandshakeError('MALFORMED_REQUEST', 'malformed request'), 'malformed');
  }
  decide(c, buf, r);
}

/** The request head as it came, from node:http's raw lines (names and values as sent, duplicates kept). */
function headOf(req: IncomingMessage): Buffer {
  let text = `${req.method} ${req.url} HTTP/${req.httpVersion}\r\n`;
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) text += `${raw[i]}: ${raw[i + 1]}\r\n`;
  // node:http decodes header bytes as latin1: encoding back the same way restores them.
  return Buffer.from(text + '\r\n', 'latin1');
}

function onHeadError(this: Socket): void {
  // 'close' follows; the listener only keeps an ECONNRESET from being thrown.
}

function onHeadClose(this: Socket): void {
  const c = connOf(this);
  if (c === undefined) return;
  setState(c, S_CLOSED);
  c.rt.wheel.cancel(c);
  c.spill = null;
}

function onHeadData(this: Socket, chunk: Buffer): void {
  const c = connOf(this);
  if (c === undefined || c.state !== S_HEAD) return; // rejected: ignore whatever else arrives
  const rt = c.rt;
  let buf = chunk;
  if (c.spill !== null) {
    // Concatenate only while the head is incomplete (rare: one read nearly always holds it).
    buf = Buffer.concat([c.spill, chunk]);
    c.spill = null;
  }
  let r: UpgradeParse;
  try {
    r = parseUpgrade(buf, rt.config.maxHeadBytes);
  } catch (err) {
    // The parser answers bad input with a HandshakeError; a throw is our bug: lose the socket, not the process.
    rt.ctx.log.error({ err }, 'upgrade parser failed');
    c.socket.destroy();
    return;
  }
  switch (r.kind) {
    case 'incomplete':
      // Own copy, outside the shared allocation pool, so a slow client pins only its own bytes.
      if (buf === chunk) {
        buf = Buffer.allocUnsafeSlow(chunk.length);
        chunk.copy(buf);
      }
      c.spill = buf;
      return;
    case 'http':
      return handOff(c, buf);
    default:
      return decide(c, buf, r);
  }
}

/** A complete head for /v1/ws: refuse it, or write the 101 and start the connection. */
function decide(c: Connection, buf: Buffer, r: Extract<UpgradeParse, { kind: 'error' | 'upgrade' }>): void {
  const rt = c.rt;
  switch (r.kind) {
    case 'error':
      return reject(c, r.error, REASON_OF[r.error.code]);
    case 'upgrade': {
      const { ctx, config } = rt;
      // Admission before anything is allocated for the connection. Heads still
      // being read (this one included) are not handshakes: they have their own budget.
      if (ctx.draining) return reject(c, overCapacity('server draining'), 'draining', Math.ceil(config.drainWindowMs / 1000));
      if (ctx.control.blockUpgrades) return reject(c, overCapacity('upgrades blocked'), 'blocked');
      if (rt.conns.size >= config.maxConnections) return reject(c, overCapacity('too many connections'), 'over_capacity');
      if (rt.handshakes - rt.heads.size >= config.maxHandshakes) return reject(c, overCapacity('too many handshakes'), 'over_capacity');
      // An allow-list protects browsers' ambient credentials (RFC 6455 §10.2); a
      // request without Origin cannot prove it is allowed, so it is refused too.
      if (config.allowedOrigins.length > 0 && (r.origin === null || !config.allowedOrigins.includes(r.origin))) {
        return reject(c, new HandshakeError('ORIGIN_FORBIDDEN', 'Origin not allowed'), 'origin');
      }
      const socket = c.socket;
      socket.write(acceptResponse(r.key, r.protocol));
      ctx.metrics.handshakes.inc();
      socket.removeListener('data', onHeadData);
      socket.removeListener('error', onHeadError);
      socket.removeListener('close', onHeadClose);
      // Bytes after the head are already frames (a client may pipeline its hello).
      startConnection(c, r.headEnd < buf.length ? buf.subarray(r.headEnd) : null);
      return;
    }
  }
}

function overCapacity(message: string): HandshakeError {
  return new HandshakeError('OVER_CAPACITY', message);
}

/** Answer the handshake error and close; no 101 is ever sent in these cases. */
function reject(c: Connection, error: HandshakeError, reason: HandshakeRejectReason, retryAfterS = RETRY_AFTER_S): void {
  const rt = c.rt;
  rt.ctx.metrics.handshakeRejections.inc({ reason });
  sampled(rt.ctx.log, 'handshake_refused', { reason, status: error.status, message: error.message, ip: c.socket.remoteAddress }, 'WebSocket handshake refused');
  setState(c, S_ENDED);
  c.spill = null;
  c.socket.end(rejectResponse(error, retryAfterS));
  // A client that never reads or never closes its side must not hold the socket.
  rt.wheel.schedule(c, rt.now() + CLOSE_GRACE_MS);
}

/**
 * Not ours: give the socket to node:http as if it had just been accepted. The
 * bytes read so far go back to the front of the stream (unshift), so node:http
 * parses them first; keep-alive, pipelining and its own 'upgrade' event (for
 * other paths) then work exactly as on a socket it accepted itself.
 */
function handOff(c: Connection, buf: Buffer): void {
  const { socket, rt } = c;
  socket.removeListener('data', onHeadData);
  socket.removeListener('error', onHeadError);
  socket.removeListener('close', onHeadClose);
  tag(socket, undefined);
  setState(c, S_CLOSED);
  rt.wheel.cancel(c);
  socket.unshift(buf);
  rt.httpServer.emit('connection', socket);
}
