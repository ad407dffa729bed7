// One WebSocket connection after the 101: the per-connection object, its state
// machine, and the SHARED socket listeners and receiver sink that drive it.
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
import type { Hub } from '../pubsub/hub.js';
import { eventMessage, resetMessage } from '../pubsub/hub.js';
import type { Replay } from '../pubsub/bus.js';
import { CURSOR_RE } from '../pubsub/cursor.js';
import { TokenError, verifySubscriberToken } from '../auth/tokens.js';
import type { TimerWheel, WheelItem } from '../timer-wheel.js';
import type { ProtocolError } from './errors.js';
import { encodeText } from './frame.js';
import { receive, type ReceiverSink, type ReceiverState } from './receiver.js';
import { closeFrame, pingMessageFrame, pongFrame } from './sender.js';
import { messageType, parseHello, parseJson, welcomeMessage } from './hello.js';

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

const EMPTY = Buffer.alloc(0);

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
  /** Sockets whose request head is still being read: only the gateway knows them (close() destroys them). */
  readonly heads: Set<Connection>;
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

/** The one transition point: keeps the handshake count and the metrics in step with the state. */
export function setState(c: Connection, next: ConnState): void {
  const prev = c.state;
  if (prev === next) return;
  if (isHandshake(prev) && !isHandshake(next)) c.rt.handshakes--;
  if (prev === S_HEAD) c.rt.heads.delete(c);
  c.state = next;
}

// ---------------------------------------------------------------------------
// After the 101

/**
 * Turn an upgraded socket into a connection: the gateway has written the 101.
 * `rest` holds bytes that followed the request head in the same read (a client
 * may pipeline its hello right behind the handshake).
 */
export function startConnection(c: Connection, rest: Buffer | null): void {
  const { socket, rt } = c;
  setState(c, S_HELLO);
  rt.conns.add(c);
  rt.ctx.metrics.wsConnections.inc();
  // Small frames, latency matters more than packet count: disable Nagle.
  socket.setNoDelay(true);
  socket.on('data', onFrames);
  socket.on('close', onSocketClose);
  socket.on('error', onSocketError);
  rt.wheel.schedule(c, rt.now() + rt.config.helloTimeoutMs);
  if (rest !== null && rest.length > 0) receive(c, rest, rt.config.maxMessageBytes, sink);
}

function onFrames(this: Socket, chunk: Buffer): void {
  const c = connOf(this);
  if (c === undefined || c.state >= S_ENDED) return;
  try {
    receive(c, chunk, c.rt.config.maxMessageBytes, sink);
  } catch (err) {
    // Bad input is answered by the receiver with a close code; anything thrown
    // here is our bug. It costs this connection, never the process.
    internalError(c, err);
  }
}

/** 1011 (PROTOCOL.md "internal error") and a log line with the cause. */
export function internalError(c: Connection, err: unknown): void {
  c.rt.ctx.log.error({ err }, 'websocket connection failed');
  closeConnection(c, 1011, 'internal error', true);
}

function onSocketError(this: Socket, err: Error): void {
  // The socket is destroyed right after 'error'; 'close' does the bookkeeping.
  const c = connOf(this);
  if (c !== undefined) c.rt.ctx.log.debug({ err: err.message }, 'websocket socket error');
}

function onSocketClose(this: Socket): void {
  const c = connOf(this);
  if (c !== undefined) finish(c);
}

/** The socket is gone: release everything the connection holds. */
function finish(c: Connection): void {
  if (c.state === S_CLOSED) return;
  const rt = c.rt;
  leaveChannels(c);
  setState(c, S_CLOSED);
  rt.wheel.cancel(c);
  c.spill = null;
  c.frags = null;
  if (rt.conns.delete(c)) rt.ctx.metrics.wsConnections.dec();
}

function leaveChannels(c: Connection): void {
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
function send(c: Connection, frame: Buffer): boolean {
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

/** The hub's deliver function (shared by every connection). */
export function deliver(c: Connection, channel: string, cursor: string | null, frame: Buffer): boolean {
  const s = c.state;
  if (s === S_OPEN || s === S_AWAIT_PONG) return send(c, frame);
  // Replay in progress: hold live events until the history is written (no gap), then dedupe (no duplicate).
  const p = c.pending;
  if (s === S_SUBSCRIBING && p !== null) {
    const queued = (p[0] as number) + frame.length;
    // They will all be written at once: the outbound limit applies to the backlog already.
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
// Deadlines: one function for the whole wheel, dispatching on state

export function onDue(c: Connection, now: number): void {
  if (c.due === 0 || c.due > now) return;
  const rt = c.rt;
  c.due = 0;
  switch (c.state) {
    case S_HEAD:
      // Slowloris on the request head: no answer is owed to a client that never finished asking.
      rt.ctx.metrics.handshakeRejections.inc({ reason: 'timeout' });
      c.socket.destroy();
      return;
    case S_HELLO:
    case S_SUBSCRIBING:
    case S_OPEN:
    case S_AWAIT_PONG:
      if (rt.ctx.control.frozen) {
        // A zombie on purpose: nothing sent, nothing closed. Look again later.
        rt.wheel.schedule(c, now + rt.config.pingMs);
        return;
      }
      if (c.state === S_HELLO) return closeConnection(c, 4408, 'no hello in time');
      // Hello received, but the token check or the bus did not answer in time: overload, try later.
      if (c.state === S_SUBSCRIBING) return closeConnection(c, 1013, 'subscription timed out');
      if (c.state === S_AWAIT_PONG) return closeConnection(c, 4408, 'no pong in time');
      // OPEN: pingMs of silence on our side.
      if (send(c, pingMessageFrame())) {
        setState(c, S_AWAIT_PONG);
        rt.wheel.schedule(c, now + rt.config.pongGraceMs);
      }
      return;
    case S_CLOSING:
    case S_ENDED:
      c.socket.destroy();
      return;
    case S_CLOSED:
      return;
  }
}

/** The client answered: back to OPEN with the next ping a full interval away. */
function alive(c: Connection): void {
  if (c.state !== S_AWAIT_PONG) return;
  setState(c, S_OPEN);
  c.rt.wheel.schedule(c, c.rt.now() + c.rt.config.pingMs);
}

// ---------------------------------------------------------------------------
// The receiver sink: one object for all connections

interface Sink extends ReceiverSink<Connection> {
  stopped(c: Connection): boolean;
}

const sink: Sink = {
  message(c, data, isText) {
    const s = c.state;
    if (s === S_HELLO) {
      setState(c, S_SUBSCRIBING);
      hello(c, parseJson(data, isText)).catch((err: unknown) => internalError(c, err));
      return;
    }
    if (s !== S_SUBSCRIBING && s !== S_OPEN && s !== S_AWAIT_PONG) return; // closing: ignore data (§7.1.2)
    const type = messageType(parseJson(data, isText));
    if (type === 'pong') return alive(c);
    // PROTOCOL.md: apart from hello and pong a client sends nothing.
    closeConnection(c, 4400, type === 'hello' ? 'bad hello: sent twice' : 'unexpected message');
  },
  ping(c, payload) {
    // RFC 6455 §5.5.2-3: answer with a pong carrying the same application data.
    if (c.state < S_CLOSING && !c.rt.ctx.control.frozen) c.socket.write(pongFrame(payload));
  },
  pong(c) {
    // §5.5.3: an unsolicited pong is a heartbeat; accept it as an answer to our ping too.
    alive(c);
  },
  close(c, code) {
    if (c.state === S_CLOSING) {
      // Our close was answered: the handshake is complete, end TCP (§7.1.1).
      setState(c, S_ENDED);
      c.socket.end();
      return;
    }
    if (c.state >= S_ENDED) return;
    // §5.5.1: echo the status code, then close.
    leaveChannels(c);
    c.socket.write(closeFrame(code));
    setState(c, S_ENDED);
    c.socket.end();
    c.rt.wheel.schedule(c, c.rt.now() + CLOSE_GRACE_MS);
  },
  error(c, err: ProtocolError) {
    // §7.1.7 fail the connection: the close code from the error table, the stable code as reason.
    closeConnection(c, err.closeCode, err.code, true);
  },
  stopped(c) {
    return c.state >= S_ENDED;
  },
};

// ---------------------------------------------------------------------------
// hello -> welcome -> replay -> live

async function hello(c: Connection, msg: unknown): Promise<void> {
  const rt = c.rt;
  const config = rt.config;
  const h = parseHello(msg, config.maxChannels);
  if (!h.ok) return closeConnection(c, 4400, h.reason);
  if (typeof h.token !== 'string' || h.token === '') {
    return closeConnection(c, 4401, h.token === undefined || h.token === '' ? 'token missing' : 'token invalid');
  }
  let granted: string[];
  try {
    granted = (await verifySubscriberToken(config.subscriberSecret, h.token)).ch;
  } catch (err) {
    if (err instanceof TokenError) return closeConnection(c, 4401, 'token ' + err.code);
    rt.ctx.log.error({ err }, 'token verification failed');
    return closeConnection(c, 1011, 'internal error');
  }
  if (c.state !== S_SUBSCRIBING) return; // closed while we verified
  const names = h.names;
  for (const name of names) {
    if (!granted.includes(name)) return closeConnection(c, 4403, 'channel not granted: ' + name);
  }

  // Subscribe BEFORE reading heads and history: an event published from now on
  // is either in what we read or queued in `pending` (or both; deduped below).
  c.pending = [0];
  c.channels = names.length === 1 ? names[0]! : names;
  for (const name of names) rt.hub.subscribe(name, c);

  let heads: string[];
  let replays: (Replay | null)[];
  const bus = rt.ctx.bus;
  try {
    [heads, replays] = await Promise.all([
      Promise.all(names.map((n) => bus.head(n))),
      Promise.all(h.cursors.map((cur, i) => (cur !== null && CURSOR_RE.test(cur) ? bus.readAfter(names[i]!, cur) : null))),
    ]);
    // A malformed cursor: reset with the head ("No silent loss").
    for (let i = 0; i < names.length; i++) {
      const cur = h.cursors[i] ?? null;
      if (cur !== null && !CURSOR_RE.test(cur)) replays[i] = { kind: 'reset', head: heads[i]! };
    }
  } catch (err) {
    if (c.state !== S_SUBSCRIBING) return;
    rt.ctx.log.warn({ err: (err as Error).message }, 'bus failed during subscribe');
    return closeConnection(c, 1011, 'bus unavailable');
  }
  if (c.state !== S_SUBSCRIBING) return; // closed while we read

  // Welcome, replay, then the queued live events. A replay may be far larger
  // than the outbound limit: before a write that would pass it, we wait for the
  // queue to flush, so a long replay flows at the client's pace and only a
  // client that stops reading is closed 1013 (by the hello deadline, or by the
  // backlog of live events in `pending`, which is bounded too).
  const socket = c.socket;
  let messages = 0;
  let bytes = 0;
  const out = async (frame: Buffer): Promise<boolean> => {
    if (socket.writableLength > 0 && overOutboundLimit(socket.writableLength, frame.length, config.maxOutboundBytes)) {
      // Would pass the limit: first let the kernel take what is queued (the
      // callback of an empty write runs once everything before it is flushed).
      await new Promise<void>((resolve) => socket.write(EMPTY, () => resolve()));
      if (c.state !== S_SUBSCRIBING) return false;
    }
    if (!send(c, frame)) return false;
    messages++;
    bytes += frame.length;
    return c.state === S_SUBSCRIBING;
  };
  try {
    if (!(await out(encodeText(welcomeMessage(config.pingMs, names, heads))))) return;
    // last[i]: the newest cursor the client will hold for channel i once the replay is written.
    const last: string[] = new Array(names.length);
    for (let i = 0; i < names.length; i++) {
      const r = replays[i];
      if (r === null || r === undefined) { last[i] = heads[i]!; continue; }
      if (r.kind === 'reset') {
        if (!(await out(encodeText(resetMessage(names[i]!, r.head))))) return;
        last[i] = r.head;
        continue;
      }
      last[i] = h.cursors[i]!;
      for (const e of r.events) {
        if (!(await out(encodeText(eventMessage(e))))) return;
        last[i] = e.cursor;
      }
    }
    // Live events that arrived meanwhile: only those after what the client now
    // holds. Events queued while this loop waits for 'drain' are picked up too.
    for (let k = 1; c.pending !== null && k < c.pending.length; k += 3) {
      const p = c.pending;
      const channel = p[k] as string;
      const cursor = p[k + 1] as string | null;
      const frame = p[k + 2] as Buffer;
      p[0] = (p[0] as number) - frame.length; // no longer a backlog once handled
      const i = names.indexOf(channel);
      if (cursor !== null) {
        if (!bus.isAfter(cursor, last[i]!)) continue;
        last[i] = cursor;
      }
      if (!(await out(frame))) return;
    }
    c.pending = null;
  } finally {
    rt.ctx.metrics.messagesOut.inc(messages);
    rt.ctx.metrics.bytesOut.inc(bytes);
  }
  if (c.state !== S_SUBSCRIBING) return;
  setState(c, S_OPEN);
  rt.wheel.schedule(c, rt.now() + config.pingMs);
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
