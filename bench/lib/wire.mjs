// Client-side RFC 6455 bytes for the raw TCP loaders: a fixed upgrade request,
// masked client frames, and a tiny parser for the server's (unmasked) frames.
// Raw sockets are far cheaper than `ws` clients, so the loaders stay out of the
// way of the server they measure.
import { createHash } from 'node:crypto';

export const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
/** A fixed, valid 16-byte nonce in base64 (RFC 6455 §4.1 allows any random 16 bytes). */
export const CLIENT_KEY = 'dGhlIHNhbXBsZSBub25jZQ==';

export function acceptFor(key) {
  return createHash('sha1').update(key + WS_GUID).digest('base64');
}

/** The upgrade request a browser would send (Chrome's header set, minus cookies). */
export function upgradeRequest(host, port, { path = '/v1/ws', protocol = true, key = CLIENT_KEY } = {}) {
  return Buffer.from(
    `GET ${path} HTTP/1.1\r\n` +
      `Host: ${host}:${port}\r\n` +
      'Connection: Upgrade\r\n' +
      'Pragma: no-cache\r\n' +
      'Cache-Control: no-cache\r\n' +
      'User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36\r\n' +
      'Upgrade: websocket\r\n' +
      `Origin: http://${host}:${port}\r\n` +
      'Sec-WebSocket-Version: 13\r\n' +
      'Accept-Encoding: gzip, deflate, br, zstd\r\n' +
      'Accept-Language: en-US,en;q=0.9\r\n' +
      `Sec-WebSocket-Key: ${key}\r\n` +
      (protocol ? 'Sec-WebSocket-Protocol: tidings.v1\r\n' : '') +
      '\r\n',
    'latin1',
  );
}

const MASK = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);

/** One masked client frame (RFC 6455 §5.3: every client frame is masked). */
export function maskedFrame(opcode, payload) {
  const len = payload.length;
  const hdr = len < 126 ? 2 : len < 65536 ? 4 : 10;
  const out = Buffer.allocUnsafe(hdr + 4 + len);
  out[0] = 0x80 | opcode;
  if (hdr === 2) out[1] = 0x80 | len;
  else if (hdr === 4) { out[1] = 0x80 | 126; out.writeUInt16BE(len, 2); }
  else { out[1] = 0x80 | 127; out.writeUInt32BE(0, 2); out.writeUInt32BE(len, 6); }
  MASK.copy(out, hdr);
  for (let i = 0; i < len; i++) out[hdr + 4 + i] = payload[i] ^ MASK[i & 3];
  return out;
}

export const maskedText = (text) => maskedFrame(0x1, Buffer.from(text, 'utf8'));

export function maskedClose(code = 1000) {
  const p = Buffer.alloc(2);
  p.writeUInt16BE(code, 0);
  return maskedFrame(0x8, p);
}

export function helloFrame(token, channels) {
  return maskedText(JSON.stringify({ type: 'hello', token, channels }));
}

export const PONG_FRAME = maskedText('{"type":"pong"}');
const PING_TEXT = Buffer.from('{"type":"ping"}');

/**
 * Incremental parser for server frames. Copies only a frame that spans chunks.
 * Calls onFrame(opcode, buf, start, end) for each complete frame.
 * Returns the leftover (or null) to pass in with the next chunk.
 */
export function parseFrames(left, chunk, onFrame) {
  let buf = left ? Buffer.concat([left, chunk]) : chunk;
  let off = 0;
  while (buf.length - off >= 2) {
    const b1 = buf[off + 1] & 0x7f;
    let hdr = 2;
    let len = b1;
    if (b1 === 126) {
      if (buf.length - off < 4) break;
      len = buf.readUInt16BE(off + 2);
      hdr = 4;
    } else if (b1 === 127) {
      if (buf.length - off < 10) break;
      len = buf.readUInt32BE(off + 6);
      hdr = 10;
    }
    if (buf.length - off < hdr + len) break;
    onFrame(buf[off] & 0x0f, buf, off + hdr, off + hdr + len);
    off += hdr + len;
  }
  return off === buf.length ? null : Buffer.from(buf.subarray(off));
}

/** Is this text payload the protocol's `{"type":"ping"}`? (Servers may also send pings as RFC 6455 ping frames.) */
export function isPingText(buf, start, end) {
  return end - start === PING_TEXT.length && buf.compare(PING_TEXT, 0, PING_TEXT.length, start, end) === 0;
}

/** Index just past CRLFCRLF in `buf`, or -1. */
export function headEnd(buf) {
  const i = buf.indexOf('\r\n\r\n', 0, 'latin1');
  return i < 0 ? -1 : i + 4;
}
