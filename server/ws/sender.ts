// Server-to-client writes that are not events: the protocol-level ping message,
// pong frames, close frames. Frames that never change are encoded once per
// process and the same Buffer is written to every socket.
import { encodeClose, encodeFrame, encodeText, OP_CLOSE, OP_PONG } from './frame.js';

/** PROTOCOL.md step 4: the application-level ping the client must answer with {"type":"pong"}. */
export const PING_TEXT = '{"type":"ping"}';

let pingFrame: Buffer | null = null;
/** The ping message as one text frame, built on first use and shared by every connection. */
export function pingMessageFrame(): Buffer {
  return (pingFrame ??= encodeText(PING_TEXT));
}

const EMPTY = Buffer.alloc(0);
const closeCache = new Map<number, Buffer>();

/**
 * A close frame (RFC 6455 §5.5.1). Reason-less frames are cached per code; 1005
 * ("no status received", §7.4.1) must never be sent on the wire, so echoing a
 * close that carried no code sends an empty close payload instead.
 */
export function closeFrame(code: number, reason = ''): Buffer {
  if (code === 1005) return encodeFrame(OP_CLOSE, EMPTY);
  if (reason !== '') return encodeClose(code, reason);
  let f = closeCache.get(code);
  if (!f) closeCache.set(code, (f = encodeClose(code)));
  return f;
}

/** RFC 6455 §5.5.3: a pong carries the ping's application data unchanged. */
export function pongFrame(payload: Buffer): Buffer {
  return encodeFrame(OP_PONG, payload);
}
