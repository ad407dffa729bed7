// What drives a connection after the 101: the socket listeners and the
// receiver sink (one shared object for all connections), and the deadlines the
// shared timer wheel fires (hello, ping, pong, close grace).
import type { Socket } from 'node:net';
import type { ProtocolError } from './errors.js';
import { receive, type ReceiverSink } from './receiver.js';
import { closeFrame, pingMessageFrame, pongFrame } from './sender.js';
import { messageType, parseJson } from './hello.js';
import {
  CLOSE_GRACE_MS, S_AWAIT_PONG, S_CLOSED, S_CLOSING, S_ENDED, S_HEAD, S_HELLO, S_OPEN, S_SUBSCRIBING,
  closeConnection, connOf, finish, internalError, leaveChannels, send, setState, type Connection,
} from './connection.js';
import { hello } from './subscribe.js';

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
  if (rest !== null && rest.length > 0) feed(c, rest);
}

function onFrames(this: Socket, chunk: Buffer): void {
  const c = connOf(this);
  if (c !== undefined && c.state < S_ENDED) feed(c, chunk);
}

function feed(c: Connection, chunk: Buffer): void {
  try {
    receive(c, chunk, c.rt.config.maxMessageBytes, sink, c.rt.config.maxFragments);
  } catch (err) {
    // Bad input is answered by the receiver with a close code; anything thrown
    // here is our bug. It costs this connection, never the process.
    internalError(c, err);
  }
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

/** The pong every client sends (PROTOCOL.md), byte for byte as the SDK writes it. */
const PONG_TEXT = Buffer.from('{"type":"pong"}');

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
    // Nearly every message after hello is this exact pong, once per ping interval
    // per connection (4,000/s at 100,000 connections): compared as bytes, not parsed.
    if (isText && data.length === PONG_TEXT.length && data.equals(PONG_TEXT)) return alive(c);
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
    // Codes 3000-4999 are the client's to choose: one label for all, not one each.
    c.rt.ctx.metrics.wsCloses.inc({ code: code >= 3000 ? 'application' : String(code), by: 'client' });
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
