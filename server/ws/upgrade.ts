// Parse an HTTP/1.1 upgrade request head straight from the Buffer: scan bytes, no
// IncomingMessage, no header object, no string per header. Only
// Sec-WebSocket-Key and Origin are copied out as strings; Sec-WebSocket-Version
// is checked in place, Sec-WebSocket-Protocol becomes a boolean. A valid head
// therefore costs two small strings and the result object; 'incomplete' and
// 'http' are shared constants and cost nothing.
import { hash } from 'node:crypto';
import { HandshakeError, type HandshakeErrorCode } from './errors.js';

export const WS_PATH = '/v1/ws';
export const SUBPROTOCOL = 'tidings.v1';
/** Retry-After (seconds) on a 503 when the caller gives none: long enough for an
 *  overloaded node to shed load; the SDK adds its own jitter on top. */
export const DEFAULT_RETRY_AFTER_S = 5;

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

const INCOMPLETE: UpgradeParse = Object.freeze({ kind: 'incomplete' });
const HTTP: UpgradeParse = Object.freeze({ kind: 'http' });

const CR = 0x0d, LF = 0x0a, SP = 0x20, HTAB = 0x09, COLON = 0x3a, COMMA = 0x2c, QMARK = 0x3f;
const latin1 = (s: string) => Buffer.from(s, 'latin1');
const PREFIX = latin1(`GET ${WS_PATH}`);
const HTTP11 = latin1(' HTTP/1.1\r\n');
const HTTP10 = latin1(' HTTP/1.0\r\n');
const CRLFCRLF = latin1('\r\n\r\n');
const LFLF = latin1('\n\n');

// RFC 9110 §5.6.2 tchar: the bytes a field name (and a list token) may contain.
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") TCHAR[c.charCodeAt(0)] = 1;
// Base64 alphabet of the key (RFC 4648 §4).
const B64 = new Uint8Array(256);
for (const c of '+/0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz') B64[c.charCodeAt(0)] = 1;

// Header names we look at, lowercase. All have distinct lengths except the two of 17.
const H_HOST = latin1('host');
const H_ORIGIN = latin1('origin');
const H_UPGRADE = latin1('upgrade');
const H_CONNECTION = latin1('connection');
const H_CONTENT_LENGTH = latin1('content-length');
const H_KEY = latin1('sec-websocket-key');
const H_TRANSFER_ENCODING = latin1('transfer-encoding');
const H_VERSION = latin1('sec-websocket-version');
const H_PROTOCOL = latin1('sec-websocket-protocol');
const T_WEBSOCKET = latin1('websocket');
const T_UPGRADE = latin1('upgrade');
const T_SUBPROTOCOL = latin1(SUBPROTOCOL);

const fail = (code: HandshakeErrorCode, message: string): UpgradeParse => ({ kind: 'error', error: new HandshakeError(code, message) });

/**
 * Decide from the first bytes of a connection. `buf` holds everything read so far.
 * Returns 'http' as soon as the request line shows it is not `GET /v1/ws[?...] `
 * (so little buffering for ordinary HTTP), 'incomplete' while the head is partial,
 * HEAD_TOO_LARGE when no CRLFCRLF within `maxHead` bytes (a head of exactly
 * `maxHead` bytes, CRLFCRLF included, is accepted).
 */
export function parseUpgrade(buf: Buffer, maxHead: number): UpgradeParse {
  const n = buf.length;
  // A partial first line ('GE', 'GET /v1/') stays 'incomplete' only while it can still
  // become GET /v1/ws; the first differing byte hands the connection to node:http.
  const p = n < PREFIX.length ? n : PREFIX.length;
  for (let i = 0; i < p; i++) if (buf[i] !== PREFIX[i]) return HTTP;
  if (n > PREFIX.length) {
    const next = buf[PREFIX.length];
    if (next !== SP && next !== QMARK) return HTTP; // '/v1/wsx', '/v1/ws/': other paths
  }
  // Only now buffer the head. indexOf is native and cheap, so re-scanning on every
  // chunk costs little even when a client dribbles its head one byte at a time.
  const end = buf.indexOf(CRLFCRLF);
  if (end < 0 || end + 4 > maxHead) {
    const lflf = buf.indexOf(LFLF);
    if (lflf >= 0 && lflf < maxHead && (end < 0 || lflf < end)) return fail('MALFORMED_REQUEST', 'bare LF line endings (RFC 9112 §2.2)');
    if (n >= maxHead) return fail('HEAD_TOO_LARGE', `request head over ${maxHead} bytes`);
    return INCOMPLETE;
  }
  return parseHead(buf, end + 4);
}

/** Parse a complete head buf[0, headEnd) whose request line starts with GET /v1/ws. */
function parseHead(buf: Buffer, headEnd: number): UpgradeParse {
  // Request line (RFC 9112 §3): GET SP /v1/ws[?query] SP HTTP/1.1 CRLF.
  let pos = PREFIX.length;
  if (buf[pos] === QMARK) {
    pos++;
    while (pos < headEnd && buf[pos]! > SP && buf[pos]! < 0x7f) pos++; // visible ASCII only
  }
  if (!matchAt(buf, pos, HTTP11)) {
    if (matchAt(buf, pos, HTTP10)) return fail('NOT_AN_UPGRADE', 'WebSocket needs HTTP/1.1 (RFC 6455 §4.1)');
    return fail('MALFORMED_REQUEST', 'malformed request line');
  }
  pos += HTTP11.length;

  let hosts = 0, keys = 0, versions = 0, origins = 0;
  let upgrade = false, connection = false, protocol = false, version13 = false, body = false;
  let keyStart = 0, originStart = 0, originEnd = 0;
  const last = headEnd - 2; // the final CRLF
  while (pos < last) {
    // field-name ":" OWS field-value OWS CRLF (RFC 9112 §5). A line starting with
    // SP/HTAB is obs-fold, a name followed by SP is whitespace before the colon: both
    // 400, as is a line with no colon: parsers that disagree here enable smuggling.
    const nameStart = pos;
    while (TCHAR[buf[pos]!] === 1) pos++;
    const nameLen = pos - nameStart;
    if (nameLen === 0 || buf[pos] !== COLON) return fail('MALFORMED_REQUEST', 'malformed header line');
    pos++;
    while (buf[pos] === SP || buf[pos] === HTAB) pos++;
    const vs = pos;
    for (;;) {
      const b = buf[pos]!;
      if (b === CR) break;
      // field-vchar, obs-text, SP, HTAB only: NUL, bare LF and other controls are refused.
      if ((b < SP && b !== HTAB) || b === 0x7f) return fail('MALFORMED_REQUEST', 'control character in a header');
      pos++;
    }
    if (buf[pos + 1] !== LF) return fail('MALFORMED_REQUEST', 'bare CR in a header');
    let ve = pos;
    while (ve > vs && (buf[ve - 1] === SP || buf[ve - 1] === HTAB)) ve--;
    pos += 2;
    switch (nameLen) {
      case 4: if (nameIs(buf, nameStart, H_HOST)) hosts++; break;
      case 6: if (nameIs(buf, nameStart, H_ORIGIN)) { origins++; originStart = vs; originEnd = ve; } break;
      case 7: if (nameIs(buf, nameStart, H_UPGRADE) && listHas(buf, vs, ve, T_WEBSOCKET, true)) upgrade = true; break;
      case 10: if (nameIs(buf, nameStart, H_CONNECTION) && listHas(buf, vs, ve, T_UPGRADE, true)) connection = true; break;
      case 14: if (nameIs(buf, nameStart, H_CONTENT_LENGTH) && !(ve - vs === 1 && buf[vs] === 0x30)) body = true; break;
      case 17:
        if (nameIs(buf, nameStart, H_KEY)) { keys++; keyStart = isKey(buf, vs, ve) ? vs : -1; }
        else if (nameIs(buf, nameStart, H_TRANSFER_ENCODING)) body = true;
        break;
      case 21:
        if (nameIs(buf, nameStart, H_VERSION)) { versions++; version13 = ve - vs === 2 && buf[vs] === 0x31 && buf[vs + 1] === 0x33; }
        break;
      case 22: if (nameIs(buf, nameStart, H_PROTOCOL) && listHas(buf, vs, ve, T_SUBPROTOCOL, false)) protocol = true; break;
    }
  }
  if (pos !== last) return fail('MALFORMED_REQUEST', 'malformed header section');

  // RFC 9112 §3.2: exactly one Host, else 400.
  if (hosts !== 1) return fail('MALFORMED_REQUEST', hosts === 0 ? 'missing Host header' : 'more than one Host header');
  // Bytes after the head must be frames; a declared body would make them ambiguous.
  if (body) return fail('MALFORMED_REQUEST', 'an upgrade request must not carry a body');
  if (!upgrade || !connection) return fail('NOT_AN_UPGRADE', 'expected Upgrade: websocket and Connection: Upgrade (RFC 6455 §4.2.1)');
  if (origins > 1) return fail('MALFORMED_REQUEST', 'more than one Origin header');
  if (versions !== 1) return fail('MALFORMED_REQUEST', versions === 0 ? 'missing Sec-WebSocket-Version' : 'more than one Sec-WebSocket-Version');
  if (!version13) return fail('BAD_VERSION', 'only Sec-WebSocket-Version 13 is supported (RFC 6455 §4.4)');
  if (keys !== 1) return fail('BAD_KEY', keys === 0 ? 'missing Sec-WebSocket-Key' : 'more than one Sec-WebSocket-Key');
  if (keyStart < 0) return fail('BAD_KEY', 'Sec-WebSocket-Key must be the base64 of 16 bytes (RFC 6455 §4.1)');
  return {
    kind: 'upgrade',
    key: buf.toString('latin1', keyStart, keyStart + 24),
    protocol,
    origin: origins === 1 ? buf.toString('latin1', originStart, originEnd) : null,
    headEnd,
  };
}

function matchAt(buf: Buffer, at: number, lit: Buffer): boolean {
  if (at + lit.length > buf.length) return false;
  for (let i = 0; i < lit.length; i++) if (buf[at + i] !== lit[i]) return false;
  return true;
}

/** Case-insensitive name compare without lowering a string: `lower` holds only a-z and
 *  '-', and the name only tchars, so `| 0x20` maps exactly the uppercase letters. */
function nameIs(buf: Buffer, at: number, lower: Buffer): boolean {
  for (let i = 0; i < lower.length; i++) if ((buf[at + i]! | 0x20) !== lower[i]) return false;
  return true;
}

/** Does the comma list buf[s, e) (RFC 9110 §5.6.1: OWS around commas, empty elements
 *  allowed) contain `token`? Upgrade and Connection tokens compare case-insensitively;
 *  subprotocols exactly, because the browser checks our echo against what it offered. */
function listHas(buf: Buffer, s: number, e: number, token: Buffer, ci: boolean): boolean {
  let i = s;
  while (i < e) {
    while (i < e && (buf[i] === SP || buf[i] === HTAB || buf[i] === COMMA)) i++;
    const start = i;
    while (i < e && buf[i] !== COMMA) i++;
    let end = i;
    while (end > start && (buf[end - 1] === SP || buf[end - 1] === HTAB)) end--;
    if (end - start === token.length) {
      let same = true;
      for (let k = 0; k < token.length && same; k++) {
        const b = buf[start + k]!;
        same = (ci ? b | 0x20 : b) === token[k];
      }
      if (same) return true;
    }
  }
  return false;
}

/** 22 base64 characters and '==': exactly what encoding 16 bytes produces. */
function isKey(buf: Buffer, s: number, e: number): boolean {
  if (e - s !== 24 || buf[s + 22] !== 0x3d || buf[s + 23] !== 0x3d) return false;
  for (let i = s; i < s + 22; i++) if (B64[buf[i]!] !== 1) return false;
  return true;
}

// RFC 6455 §4.2.2 step 5.4: Sec-WebSocket-Accept = base64(SHA-1(key + GUID)).
const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const ACCEPT_HEAD = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ';
const ACCEPT_AT = ACCEPT_HEAD.length;
const TEMPLATE = latin1(`${ACCEPT_HEAD}${'='.repeat(28)}\r\n\r\n`);
const TEMPLATE_PROTOCOL = latin1(`${ACCEPT_HEAD}${'='.repeat(28)}\r\nSec-WebSocket-Protocol: ${SUBPROTOCOL}\r\n\r\n`);

// Scratch input for the SHA-1: 24 bytes for the key, then the GUID, written once.
// Hashing `key + GUID` as a string made V8 flatten a new 60-character string per
// handshake (~300 bytes with the key fresh from the parser); the key's bytes are
// copied in here instead. Safe to share: filled and hashed synchronously.
const KEY_GUID = latin1(`${'='.repeat(24)}${GUID}`);

/** The Sec-WebSocket-Accept value for a key (RFC 6455 §4.2.2). */
export function acceptKey(key: string): string {
  if (!isAsciiKey(key)) return hash('sha1', key + GUID, 'base64');
  KEY_GUID.write(key, 0, 24, 'latin1');
  return hash('sha1', KEY_GUID, 'base64');
}

/** 24 ASCII characters, as every parsed key is: its latin1 bytes are its UTF-8 bytes. */
function isAsciiKey(key: string): boolean {
  if (key.length !== 24) return false;
  for (let i = 0; i < 24; i++) if (key.charCodeAt(i) > 0x7f) return false;
  return true;
}

/** The 101 response, from a precomputed template plus the computed Sec-WebSocket-Accept. */
export function acceptResponse(key: string, protocol: boolean): Buffer {
  const template = protocol ? TEMPLATE_PROTOCOL : TEMPLATE;
  const out = Buffer.allocUnsafe(template.length);
  // TypedArray set, not template.copy(): copy() builds a Uint8Array view of the source per call.
  out.set(template);
  out.write(acceptKey(key), ACCEPT_AT, 28, 'latin1');
  return out;
}

const REASONS: Record<number, string> = {
  400: 'Bad Request', 403: 'Forbidden', 404: 'Not Found', 426: 'Upgrade Required',
  431: 'Request Header Fields Too Large', 503: 'Service Unavailable',
};

/** A complete HTTP/1.1 error response for a handshake error (JSON body, Connection: close;
 *  426 adds Sec-WebSocket-Version: 13; 503 adds Retry-After: retryAfterSec). */
export function rejectResponse(error: HandshakeError, retryAfterSec = DEFAULT_RETRY_AFTER_S): Buffer {
  const body = JSON.stringify({ error: error.code.toLowerCase(), message: error.message });
  let head = `HTTP/1.1 ${error.status} ${REASONS[error.status] ?? 'Error'}\r\n`;
  if (error.status === 426) {
    // RFC 9110 §15.5.22: a 426 MUST carry Upgrade, and §7.8 a sender of Upgrade MUST
    // list "upgrade" in Connection. RFC 6455 §4.4: advertise the version we speak.
    head += 'Upgrade: websocket\r\nConnection: Upgrade, close\r\nSec-WebSocket-Version: 13\r\n';
  } else {
    head += 'Connection: close\r\n';
  }
  if (error.status === 503) {
    const s = Number.isFinite(retryAfterSec) && retryAfterSec >= 0 ? Math.ceil(retryAfterSec) : DEFAULT_RETRY_AFTER_S;
    head += `Retry-After: ${s}\r\n`;
  }
  head += `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
  return Buffer.from(head, 'utf8');
}
