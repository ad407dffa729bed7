// One WebSocket connection: the per-connection object, its state, and the
// operations every other module uses on it (write, deliver, close, forget).
// What drives it lives in session.ts (socket listeners, receiver sink,
// deadlines) and subscribe.ts (hello -> welcome -> replay -> live).
//
// Memory design (docs/server.md "Memory"): an idle subscriber costs the socket
// plus ONE Connection object. No closure, timer, EventEmitter, Map or array per
// connection: listeners are module-level functions that find the connection
// through a symbol on the socket; deadlines live in `due` on the shared timer
// wheel; receiver buffers (`spill`, `frags`) are null between frames; a single
// channel is stored as a bare string.
import type { Socket } from 'node:net';
import type { Server as HttpServer } from 'node:http';
import type { Config } from '../config.js';
import type { ServerContext } from '../context.js';
import type { Hub, Parts } from '../pubsub/hub.js';
import type { TimerWheel, WheelItem } from '../timer-wheel.js';
import type { ReceiverState } from './receiver.js';
import { closeFrame } from './sender.js';
import type { RateLimitedLog, SourceHeads } from '../admission.js';

/**
 * The connection's state, one small integer (a union of literals, not strings,
 * so it costs a Smi field). HEAD is the gateway's phase before any decision.
 *
 *   HEAD -> HELLO -> SUBSCRIBING -> OPEN <-> AWAIT_PONG
 *   any of them -> CLOSING (we sent close, waiting for the peer's) -> ENDED -> CLOSED
 *   any of them -> ENDED (close sent or echoed, our FIN sent)      -> CLOSED (socket gone)
 */
export const S_HEAD = 0;
export const S_HELLO = 1;
export const S_SUBSCRIBING = 2;
export const S_OPEN = 3;
export const S_AWAIT_PONG = 4;
export const S_CLOSING = 5;
export const S_ENDED = 6;
export const S_CLOSED = 7;
export type ConnState =
  | typeof S_HEAD | typeof S_HELLO | typeof S_SUBSCRIBING | typeof S_OPEN
  | typeof S_AWAIT_PONG | typeof S_CLOSING | typeof S_ENDED | typeof S_CLOSED;

/**
 * After our close frame (or our FIN), how long the peer gets to answer before
 * the socket is destroyed. RFC 6455 §7.1.1 wants the server to close TCP after
 * the closing handshake; a peer that never answers must not hold the socket.
 */
export const CLOSE_GRACE_MS = 2_000;


/** Retry-After (seconds) on a 503 for over capacity or blocked upgrades. Draining uses the drain window. */
export const RETRY_AFTER_S = 5;

/** What every connection of one server shares: one object, referenced from each connection. */
export interface Runtime {
  readonly ctx: ServerContext;
  readonly config: Config;
  readonly hub: Hub<Connection>;
  readonly wheel: TimerWheel<Connection>;
  readonly now: () => number;
  readonly httpServer: HttpServer;
  /** WebSocket connections from the 101 until their socket closes. */
  readonly conns: Set<Connection>;
  /** Sockets accepted and not yet decided (HEAD) plus connections before `welcome` (HELLO, SUBSCRIBING). */
  handshakes: number;
  /** Sockets whose request head is still being read, oldest first: only the gateway knows them (close() destroys them). */
  readonly heads: Set<Connection>;
  /** Open sockets accepted by the gateway (WebSocket, HTTP, still deciding), against config.maxSockets. */
  sockets: number;
  /** Pending heads per remote address (config.headsPerSource). */
  readonly sources: SourceHeads<Connection>;
  /** The "socket budget reached" warning, at most once per interval. */
  readonly refusedLog: RateLimitedLog;
  /** Bytes of replay events read and not yet written, over all connections (config.maxReplayBytes). */
  replayBytes: number;
}

export class Connection implements ReceiverState, WheelItem {
  state: ConnState = S_HEAD;
  due = 0;
  wheelSeq = 0;
  spill: Buffer | null = null;
  frags: Buffer[] | null = null;
  fragOpcode = 0;
  fragBytes = 0;
  /** One channel as a bare string (the common case), several as an array, none before hello. */
  channels: string | string[] | null = null;
  /**
   * Only while SUBSCRIBING: live events that arrived during the replay, as
   * [queued bytes, channel, cursor | null, frame, channel, ...]. Null otherwise.
   */
  pending: (number | string | Buffer | null)[] | null = null;

  constructor(readonly socket: Socket, readonly rt: Runtime) {}
}

const kConn = Symbol('tidings.conn');
type Tagged = Socket & { [kConn]?: Connection | undefined };

export function connOf(socket: Socket): Connection | undefined {
  return (socket as Tagged)[kConn];
}
export function tag(socket: Socket, conn: Connection | undefined): void {
  (socket as Tagged)[kConn] = conn;
}

function isHandshake(s: ConnState): boolean {
  return s <= S_SUBSCRIBING;
}

/** The one transition point: keeps the handshake count and the head registry in step with the state. */
export function setState(c: Connection, next: ConnState): void {
  const prev = c.state;
  if (prev === next) return;
  if (isHandshake(prev) && !isHandshake(next)) c.rt.handshakes--;
  if (prev === S_HEAD && c.rt.heads.delete(c)) c.rt.sources.remove(c.socket.remoteAddress ?? '', c);
  c.state = next;
}

// ---------------------------------------------------------------------------
// Leaving

/** 1011 (PROTOCOL.md "internal error") and a log line with the cause. */
export function internalError(c: Connection, err: unknown): void {
  c.rt.ctx.log.error({ err }, 'websocket connection failed');
  closeConnection(c, 1011, 'internal error', true);
}

/** The socket is gone: release everything the connection holds. */
export function finish(c: Connection): void {
  if (c.state === S_CLOSED) return;
  const rt = c.rt;
  // Gone without a closing handshake (reset, destroyed, dropAll(0)): what a client sees as 1006.
  if (c.state < S_CLOSING && rt.conns.has(c)) rt.ctx.metrics.wsCloses.inc({ code: '1006', by: 'abnormal' });
  leaveChannels(c);
  setState(c, S_CLOSED);
  rt.wheel.cancel(c);
  c.spill = null;
  c.frags = null;
  if (rt.conns.delete(c)) rt.ctx.metrics.wsConnections.dec();
}

export function leaveChannels(c: Connection): void {
  const ch = c.channels;
  if (ch === null) return;
  c.channels = null;
  c.pending = null;
  const hub = c.rt.hub;
  if (typeof ch === 'string') hub.unsubscribe(ch, c);
  else for (const name of ch) hub.unsubscribe(name, c);
}

// ---------------------------------------------------------------------------
// Writes

/**
 * RFC 6455 gives no flow control beyond TCP; a client that does not read
 * would make us buffer without bound. Past the limit the connection is closed
 * 1013 instead: nothing is lost, the client resumes from its cursor.
 */
export function overOutboundLimit(writableLength: number, frameBytes: number, maxOutboundBytes: number): boolean {
  return writableLength + frameBytes > maxOutboundBytes;
}

/** Write one frame; false when it was not written (frozen, or the client is too slow and is now closed 1013). */
export function send(c: Connection, frame: Buffer): boolean {
  const rt = c.rt;
  if (rt.ctx.control.frozen) return false;
  const socket = c.socket;
  if (overOutboundLimit(socket.writableLength, frame.length, rt.config.maxOutboundBytes)) {
    rt.ctx.metrics.slowConsumerCloses.inc();
    closeConnection(c, 1013, 'slow consumer', true);
    return false;
  }
  socket.write(frame);
  // Pings fill silence only: any send pushes the next ping back. Later `due` is
  // lazy: the wheel re-files the item when it reaches the old slot.
  if (c.state === S_OPEN) c.due = rt.now() + rt.config.pingMs;
  return true;
}

/**
 * The hub's deliver function (shared by every connection). A merged batch
 * (`parts` not null) is one write of `frame` to an open connection; a
 * connection still replaying takes it event by event.
 */
export function deliver(c: Connection, channel: string, cursor: string | null, frame: Buffer, parts: Parts | null = null): boolean {
  const s = c.state;
  if (s === S_OPEN || s === S_AWAIT_PONG) return send(c, frame);
  if (parts !== null) {
    let ok = false;
    for (let i = 0; i < parts.length; i += 2) ok = hold(c, channel, parts[i] as string | null, parts[i + 1] as Buffer) || ok;
    return ok;
  }
  return hold(c, channel, cursor, frame);
}

/** Replay in progress: hold live events until the history is written (no gap), then dedupe (no duplicate). */
function hold(c: Connection, channel: string, cursor: string | null, frame: Buffer): boolean {
  const s = c.state;
  const p = c.pending;
  if (s === S_SUBSCRIBING && p !== null) {
    const queued = (p[0] as number) + frame.length;
    // Held in memory until the replay is written: bounded like the send buffer.
    if (queued > c.rt.config.maxOutboundBytes) {
      c.rt.ctx.metrics.slowConsumerCloses.inc();
      closeConnection(c, 1013, 'slow consumer', true);
      return false;
    }
    p[0] = queued;
    p.push(channel, cursor, frame);
  }
  return false;
}

/**
 * Start the closing handshake (RFC 6455 §7.1.2). Normally we wait for the
 * peer's close frame and then end TCP (§7.1.1); with `endNow` (protocol
 * failure §7.1.7, slow consumer) our FIN follows the close frame at once.
 * Either way the socket is destroyed after CLOSE_GRACE_MS.
 */
export function closeConnection(c: Connection, code: number, reason = '', endNow = false): void {
  if (c.state >= S_CLOSING) return;
  const rt = c.rt;
  leaveChannels(c);
  rt.ctx.metrics.wsCloses.inc({ code: String(code), by: 'server' });
  c.socket.write(closeFrame(code, reason));
  if (endNow) {
    setState(c, S_ENDED);
    c.spill = null;
    c.frags = null;
    c.socket.end();
  } else {
    setState(c, S_CLOSING);
  }
  rt.wheel.schedule(c, rt.now() + CLOSE_GRACE_MS);
  rt.ctx.log.debug({ code, reason }, 'websocket close');
}

/** Abrupt end (dropAll(0), hard drain cap). */
export function destroyConnection(c: Connection): void {
  c.socket.destroy();
}
// ---------------------------------------------------------------------------
// Controls (ServerContext.control)

/** Close every connection with `code` (0: destroy abruptly). Returns how many. */
export function closeAll(rt: Runtime, code: number, reason = ''): number {
  let n = 0;
  for (const c of [...rt.conns]) {
    if (c.state >= S_CLOSING) continue;
    n++;
    if (code === 0) destroyConnection(c);
    else closeConnection(c, code, reason);
  }
  return n;
}
