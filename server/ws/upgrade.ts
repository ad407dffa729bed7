// CONTRACT: parse an HTTP/1.1 upgrade request head straight from the Buffer:
// scan bytes, no IncomingMessage, no header object, no string per header. Only
// Sec-WebSocket-Key, Sec-WebSocket-Version, Sec-WebSocket-Protocol(has tidings.v1)
// and Origin are copied out.
import type { HandshakeError } from './errors.js';

export const WS_PATH = '/v1/ws';
export const SUBPROTOCOL = 'tidings.v1';

export type UpgradeParse =
  /** Head not complete yet (no CRLFCRLF) and under the limit: wait for more bytes. */
  | { kind: 'incomplete' }
  /** Not a request for /v1/ws by GET: hand the bytes to node:http unchanged. */
  | { kind: 'http' }
  | { kind: 'error'; error: HandshakeError }
  | {
      kind: 'upgrade';
      key: string;             // the 24-char base64 key
      protocol: boolean;       // client offered tidings.v1
      origin: string | null;
      headEnd: number;         // offset just past CRLFCRLF: bytes after it are WebSocket frames
    };

/**
 * Decide from the first bytes of a connection. `buf` holds everything read so far.
 * Returns 'http' as soon as the request line shows it is not `GET /v1/ws[?...] `
 * (so little buffering for ordinary HTTP), 'incomplete' while the head is partial,
 * HEAD_TOO_LARGE when no CRLFCRLF within `maxHead` bytes.
 */
export declare function parseUpgrade(buf: Buffer, maxHead: number): UpgradeParse;

/** The 101 response, from a precomputed template plus the computed Sec-WebSocket-Accept. */
export declare function acceptResponse(key: string, protocol: boolean): Buffer;

/** A complete HTTP/1.1 error response for a handshake error (JSON body, Connection: close;
 *  426 adds Sec-WebSocket-Version: 13; 503 adds Retry-After: retryAfterSec). */
export declare function rejectResponse(error: HandshakeError, retryAfterSec?: number): Buffer;
