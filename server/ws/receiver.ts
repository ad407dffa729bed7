// The receiver is a state machine over TCP chunks (STYLE.md §4). Its state lives
// in fields of the connection object itself, so an idle connection holds no
// buffer: `spill` is non-null only while a frame is split across reads, `frags`
// only while a fragmented message is open.
//
// Frame phase, derived from the fields (see `framePhase`):
//   'start'   spill === null: the next byte begins a frame; nothing held.
//   'header'  spill holds the first bytes (< 14) of a header split across reads.
//   'payload' spill holds a complete header and part of the payload. Its backing
//             store was allocated for the whole frame (bounded by the limit, checked
//             from the declared length first), so each later chunk is copied in once:
//             no concat per read, no quadratic cost for a frame dribbled byte by byte.
// Message phase: fragOpcode === 0 none open, OP_TEXT/OP_BINARY fragmented message
// open, RECEIVER_STOPPED after a close frame or an error (everything after is ignored).
import { isUtf8 } from 'node:buffer';
import { ProtocolError, type ProtocolErrorCode } from './errors.js';
import {
  decodeHeader, isValidCloseCode, unmask, type FrameHeader,
  OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT,
} from './frame.js';

export interface ReceiverState {
  /** Bytes of an incomplete frame carried over to the next chunk, else null. */
  spill: Buffer | null;
  /** Payloads of a fragmented message received so far, else null. */
  frags: Buffer[] | null;
  /** Opcode of the open fragmented message (OP_TEXT/OP_BINARY), 0 when none,
   *  RECEIVER_STOPPED once a close frame or a protocol error ended the stream. */
  fragOpcode: number;
  /** Total payload bytes in `frags`. */
  fragBytes: number;
}

/** Shared callbacks (one object for all connections: no closure per connection). */
export interface ReceiverSink<C> {
  /** A complete data message. Text is already UTF-8 validated. `data` may be a view into the
   *  chunk: use it synchronously or copy it. */
  message(conn: C, data: Buffer, isText: boolean): void;
  /** `payload` may be a view into the chunk (copy it to keep it; encodeFrame copies). */
  ping(conn: C, payload: Buffer): void;
  pong(conn: C, payload: Buffer): void;
  /** A close frame; code 1005 when the payload was empty. Code and reason already validated.
   *  The receiver stops: later bytes of this chunk and later chunks are ignored. */
  close(conn: C, code: number, reason: string): void;
  /** A protocol violation; the receiver stops for good (as after close). Send close with err.closeCode. */
  error(conn: C, err: ProtocolError): void;
  /** Optional: checked after each delivered frame; true (e.g. the sink closed the connection
   *  on a bad `hello`) stops parsing the rest of the chunk. */
  stopped?(conn: C): boolean;
}

/** fragOpcode value after close/error: `receive` ignores all further input until initReceiver. */
export const RECEIVER_STOPPED = -1;

/** §5.2: longest header: 2 + 8 (64-bit length) + 4 (mask key). */
const MAX_HEADER = 14;

/**
 * Default cap on the frames of one fragmented message (config.maxFragments).
 * Why a cap: empty continuation frames cost nothing against the size limit, so
 * without it one connection could send them forever (measured: 18 million in
 * 15 s, a core busy). With it the pieces are few, so they are kept as they came
 * and joined once, at the end: linear in the message size, whatever the
 * fragmentation (joining every N pieces copied a large first fragment again and again).
 */
export const DEFAULT_MAX_FRAGMENTS = 128;

export type FramePhase = 'start' | 'header' | 'payload';

export function framePhase(state: ReceiverState): FramePhase {
  const spill = state.spill;
  if (spill === null) return 'start';
  return decodeHeader(spill, 0, spill.length, scratch) === 'complete' ? 'payload' : 'header';
}

const MESSAGES: Record<ProtocolErrorCode, string> = {
  UNMASKED_FRAME: 'client frames must be masked',
  RESERVED_BITS: 'RSV bits set but no extension was negotiated',
  BAD_OPCODE: 'reserved opcode',
  CONTROL_FRAGMENTED: 'control frame without FIN',
  CONTROL_TOO_LONG: 'control frame payload over 125 bytes',
  UNEXPECTED_CONTINUATION: 'continuation frame with no message open',
  EXPECTED_CONTINUATION: 'new data frame while a fragmented message is open',
  BAD_LENGTH: 'non-minimal or over-63-bit payload length',
  BAD_CLOSE_PAYLOAD: 'close payload of 1 byte',
  BAD_CLOSE_CODE: 'close code not allowed on the wire',
  INVALID_UTF8: 'text is not valid UTF-8',
  MESSAGE_TOO_BIG: 'message over the size limit',
  TOO_MANY_FRAGMENTS: 'message in more fragments than the limit',
};

// One header record reused for every frame: receive() is synchronous and reads it only
// between decodeHeader and the next sink call.
const scratch: FrameHeader = { fin: false, opcode: 0, length: 0, size: 0, masked: false };

export function initReceiver(state: ReceiverState): void {
  state.spill = null;
  state.frags = null;
  state.fragOpcode = 0;
  state.fragBytes = 0;
}

/**
 * Feed one chunk. Calls sink methods synchronously for every complete frame/message.
 * Unmasks in place (the chunk is ours). `maxMessage` bounds a single message (all
 * fragments together, and each frame's declared length): over it -> MESSAGE_TOO_BIG
 * before buffering the payload. Stops at the first error or close frame (and ignores
 * any later chunk), or when `sink.stopped(conn)` says so between frames.
 */
export function receive<C extends ReceiverState>(
  conn: C, chunk: Buffer, maxMessage: number, sink: ReceiverSink<C>, maxFragments: number = DEFAULT_MAX_FRAGMENTS,
): void {
  if (conn.fragOpcode === RECEIVER_STOPPED) return;
  let off = 0;
  if (conn.spill !== null) {
    off = resume(conn, chunk, maxMessage, maxFragments, sink);
    if (off < 0) return;
  }
  const end = chunk.length;
  const hdr = scratch;
  while (off < end) {
    const status = decodeHeader(chunk, off, end, hdr);
    if (status === 'partial') {
      conn.spill = copyOf(chunk, off, end); // < 14 bytes
      return;
    }
    if (status !== 'complete') return fail(conn, sink, status);
    const broken = messageRule(conn, hdr, maxMessage, maxFragments);
    if (broken !== null) return fail(conn, sink, broken);
    const total = hdr.size + hdr.length;
    if (end - off < total) {
      // Copy only the leftover, into storage sized for the whole frame (phase 'payload').
      const whole = Buffer.allocUnsafe(total);
      chunk.copy(whole, 0, off, end);
      conn.spill = whole.subarray(0, end - off);
      return;
    }
    const start = off + hdr.size;
    off += total;
    if (!deliver(conn, chunk, start, off, hdr.fin, hdr.opcode, false, sink)) return;
  }
}

/** Continue the frame held in `spill` with the chunk. Returns the chunk offset after the
 *  frame, or -1 when the chunk is used up or parsing stopped. */
function resume<C extends ReceiverState>(conn: C, chunk: Buffer, maxMessage: number, maxFragments: number, sink: ReceiverSink<C>): number {
  const spill = conn.spill!;
  const hdr = scratch;
  let whole: Buffer;
  let have: number;
  let used = 0;
  if (decodeHeader(spill, 0, spill.length, hdr) === 'complete') {
    // Phase 'payload': the backing store already has room for the whole frame.
    whole = Buffer.from(spill.buffer, spill.byteOffset, hdr.size + hdr.length);
    have = spill.length;
  } else {
    // Phase 'header': join the few header bytes with the start of this chunk.
    const n = Math.min(spill.length + chunk.length, MAX_HEADER);
    const head = Buffer.allocUnsafe(n);
    spill.copy(head, 0);
    chunk.copy(head, spill.length, 0, n - spill.length);
    const status = decodeHeader(head, 0, n, hdr);
    if (status === 'partial') {
      conn.spill = head; // n < 14, so the whole chunk went into head
      return -1;
    }
    if (status !== 'complete') {
      fail(conn, sink, status);
      return -1;
    }
    const broken = messageRule(conn, hdr, maxMessage, maxFragments);
    if (broken !== null) {
      fail(conn, sink, broken);
      return -1;
    }
    whole = Buffer.allocUnsafe(hdr.size + hdr.length);
    head.copy(whole, 0, 0, hdr.size);
    have = hdr.size;
    used = hdr.size - spill.length;
  }
  const total = hdr.size + hdr.length;
  const take = Math.min(total - have, chunk.length - used);
  chunk.copy(whole, have, used, used + take);
  have += take;
  used += take;
  if (have < total) {
    conn.spill = whole.subarray(0, have);
    return -1;
  }
  conn.spill = null; // frame complete: drop the spill at once
  return deliver(conn, whole, hdr.size, total, hdr.fin, hdr.opcode, true, sink) ? used : -1;
}

/** §5.4 fragmentation rules and the size and fragment limits, decided from the header alone. */
function messageRule(conn: ReceiverState, hdr: FrameHeader, maxMessage: number, maxFragments: number): ProtocolErrorCode | null {
  const op = hdr.opcode;
  if (op === OP_CONTINUATION) {
    if (conn.fragOpcode === 0) return 'UNEXPECTED_CONTINUATION';
    if (conn.fragBytes + hdr.length > maxMessage) return 'MESSAGE_TOO_BIG';
    if (conn.frags!.length >= maxFragments) return 'TOO_MANY_FRAGMENTS';
  } else if (op === OP_TEXT || op === OP_BINARY) {
    if (conn.fragOpcode !== 0) return 'EXPECTED_CONTINUATION';
    if (hdr.length > maxMessage) return 'MESSAGE_TOO_BIG';
  }
  return null;
}

/** One complete frame at buf[start, end) (mask key at start-4). Returns false to stop.
 *  `owned`: buf is our own allocation (the spill), so fragments need no copy. */
function deliver<C extends ReceiverState>(
  conn: C, buf: Buffer, start: number, end: number, fin: boolean, opcode: number, owned: boolean, sink: ReceiverSink<C>,
): boolean {
  unmask(buf, buf, start, end, start - 4);
  const payload = buf.subarray(start, end);
  switch (opcode) {
    case OP_TEXT:
    case OP_BINARY:
      if (fin) return emit(conn, payload, opcode === OP_TEXT, sink);
      // Copy: the chunk may be a shared read buffer, and a view would pin all of it.
      conn.frags = [owned ? payload : copyOf(payload, 0, payload.length)];
      conn.fragOpcode = opcode;
      conn.fragBytes = payload.length;
      return true;
    case OP_CONTINUATION: {
      const frags = conn.frags!;
      frags.push(owned ? payload : copyOf(payload, 0, payload.length));
      conn.fragBytes += payload.length;
      // Pieces are kept as they came (at most maxFragments) and joined once, below.
      if (!fin) return true;
      const data = frags.length === 1 ? frags[0]! : Buffer.concat(frags, conn.fragBytes);
      const isText = conn.fragOpcode === OP_TEXT;
      conn.frags = null;
      conn.fragOpcode = 0;
      conn.fragBytes = 0;
      return emit(conn, data, isText, sink);
    }
    case OP_PING:
      sink.ping(conn, payload);
      return !isStopped(conn, sink);
    case OP_PONG:
      sink.pong(conn, payload);
      return !isStopped(conn, sink);
    case OP_CLOSE:
      closeFrame(conn, payload, sink);
      return false;
  }
  return false; // unreachable: decodeHeader rejects every other opcode
}

function emit<C extends ReceiverState>(conn: C, data: Buffer, isText: boolean, sink: ReceiverSink<C>): boolean {
  // §8.1: the whole message must be UTF-8; checking the joined message avoids
  // tracking a code point split across fragments.
  if (isText && !isUtf8(data)) {
    fail(conn, sink, 'INVALID_UTF8');
    return false;
  }
  sink.message(conn, data, isText);
  return !isStopped(conn, sink);
}

/** §5.5.1: empty, or a 2-byte code plus a UTF-8 reason. */
function closeFrame<C extends ReceiverState>(conn: C, payload: Buffer, sink: ReceiverSink<C>): void {
  if (payload.length === 1) return fail(conn, sink, 'BAD_CLOSE_PAYLOAD');
  let code = 1005; // §7.1.5: "no status code was actually present"
  let reason = '';
  if (payload.length >= 2) {
    code = payload.readUInt16BE(0);
    if (!isValidCloseCode(code)) return fail(conn, sink, 'BAD_CLOSE_CODE');
    if (!isUtf8(payload.subarray(2))) return fail(conn, sink, 'INVALID_UTF8');
    reason = payload.toString('utf8', 2);
  }
  stop(conn);
  sink.close(conn, code, reason);
}

function fail<C extends ReceiverState>(conn: C, sink: ReceiverSink<C>, code: ProtocolErrorCode): void {
  stop(conn);
  sink.error(conn, new ProtocolError(code, MESSAGES[code]));
}

/** Release every buffer and ignore further input. */
function stop(conn: ReceiverState): void {
  conn.spill = null;
  conn.frags = null;
  conn.fragOpcode = RECEIVER_STOPPED;
  conn.fragBytes = 0;
}

function isStopped<C extends ReceiverState>(conn: C, sink: ReceiverSink<C>): boolean {
  return conn.fragOpcode === RECEIVER_STOPPED || (sink.stopped !== undefined && sink.stopped(conn));
}

function copyOf(buf: Buffer, start: number, end: number): Buffer {
  const out = Buffer.allocUnsafe(end - start);
  buf.copy(out, 0, start, end);
  return out;
}
