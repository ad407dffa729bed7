// Reference 2: the floor a plain Node server can reach. `net` server, the
// upgrade head parsed by hand from the first chunk(s), one small object per
// connection, each event framed once and the same Buffer written to every
// subscriber. Everything that is not GET /v1/ws goes to a node:http server.
import net from 'node:net';
import http from 'node:http';
import { createHash } from 'node:crypto';
import { createHub, readBody, PING_INTERVAL_MS, HELLO_TIMEOUT_MS } from './common.mjs';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const PING = textFrame('{"type":"ping"}');

export function textFrame(text) {
  const payload = Buffer.from(text, 'utf8');
  const len = payload.length;
  const hdr = len < 126 ? 2 : len < 65536 ? 4 : 10;
  const out = Buffer.allocUnsafe(hdr + len);
  out[0] = 0x81;
  if (hdr === 2) out[1] = len;
  else if (hdr === 4) { out[1] = 126; out.writeUInt16BE(len, 2); }
  else { out[1] = 127; out.writeUInt32BE(0, 2); out.writeUInt32BE(len, 6); }
  payload.copy(out, hdr);
  return out;
}

function closeFrame(code) {
  const b = Buffer.from([0x88, 2, code >> 8, code & 0xff]);
  return b;
}

/** Returns header value (latin1) or null; a plain case-insensitive scan of the head. */
function header(head, name) {
  const re = new RegExp(`\r\n${name}:[ \t]*([^\r\n]*)`, 'i');
  const m = re.exec(head);
  return m ? m[1].trim() : null;
}

export function createNetServer({ secret, publisherKey }) {
  const hub = createHub({ secret, publisherKey });
  const conns = new Set();

  const httpServer = http.createServer(async (req, res) => {
    if (req.method === 'POST' && req.url === '/v1/publish') {
      let body;
      try { body = await readBody(req); } catch { res.writeHead(413).end(); return; }
      const r = hub.publish(req.headers.authorization, body);
      if (r.event) {
        const frame = textFrame(r.event.text); // framed once, same Buffer for all
        for (const c of r.event.subs) c.sock.write(frame);
      }
      res.writeHead(r.status, { 'content-type': 'application/json' }).end(r.body);
      return;
    }
    if (req.url === '/healthz') { res.end('ok'); return; }
    res.writeHead(404).end();
  });

  function onHead(sock, buf) {
    const end = buf.indexOf('\r\n\r\n');
    if (end < 0) return buf.length > 8192 ? (sock.destroy(), null) : 'more';
    const head = buf.toString('latin1', 0, end);
    if (!head.startsWith('GET /v1/ws')) return 'http';
    const key = header(head, 'sec-websocket-key');
    if (!key || key.length !== 24 || header(head, 'sec-websocket-version') !== '13') {
      sock.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return null;
    }
    const proto = /(^|[ ,])tidings\.v1($|[ ,])/.test(header(head, 'sec-websocket-protocol') ?? '');
    const accept = createHash('sha1').update(key + GUID).digest('base64');
    sock.write(
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Accept: ${accept}\r\n` + (proto ? 'Sec-WebSocket-Protocol: tidings.v1\r\n' : '') + '\r\n',
    );
    return end + 4;
  }

  function onFrames(c, chunk) {
    let buf = c.left ? Buffer.concat([c.left, chunk]) : chunk;
    c.left = null;
    let off = 0;
    while (buf.length - off >= 6) {
      const op = buf[off] & 0x0f;
      const b1 = buf[off + 1];
      if (!(b1 & 0x80)) { c.sock.end(closeFrame(1002)); return; }
      let len = b1 & 0x7f;
      let hdr = 2;
      if (len === 126) { len = buf.readUInt16BE(off + 2); hdr = 4; }
      else if (len === 127) { c.sock.end(closeFrame(1009)); return; }
      if (buf.length - off < hdr + 4 + len) break;
      const m = off + hdr;
      const p = m + 4;
      for (let i = 0; i < len; i++) buf[p + i] ^= buf[m + (i & 3)];
      c.alive = true;
      if (op === 0x8) { c.sock.end(closeFrame(1000)); return; }
      if (op === 0x9) { c.sock.write(Buffer.concat([Buffer.from([0x8a, len]), buf.subarray(p, p + len)])); }
      else if (op === 0x1 && c.channels === null) onHello(c, buf.toString('utf8', p, p + len));
      off = p + len;
    }
    // Only a partial frame is copied; an idle connection holds no buffer.
    if (off < buf.length) c.left = Buffer.from(buf.subarray(off));
  }

  async function onHello(c, text) {
    c.channels = [];
    const r = await hub.hello(text);
    if (r.close) { c.sock.end(closeFrame(r.close)); return; }
    clearTimeout(c.timer);
    c.timer = null;
    c.channels = r.names;
    c.sock.write(textFrame(hub.subscribe(c, r.names)));
  }

  const server = net.createServer((sock) => {
    let pending = null;
    const onFirst = (chunk) => {
      const buf = pending ? Buffer.concat([pending, chunk]) : chunk;
      const r = onHead(sock, buf);
      if (r === 'more') { pending = buf; return; }
      sock.removeListener('data', onFirst);
      pending = null;
      if (r === null) return;
      if (r === 'http') { sock.pause(); sock.unshift(buf); httpServer.emit('connection', sock); sock.resume(); return; }
      const c = { sock, channels: null, left: null, alive: true, timer: null };
      c.timer = setTimeout(() => sock.end(closeFrame(4408)), HELLO_TIMEOUT_MS);
      conns.add(c);
      sock.on('data', (d) => onFrames(c, d));
      sock.on('close', () => { conns.delete(c); clearTimeout(c.timer); if (c.channels) hub.unsubscribe(c, c.channels); });
      if (r < buf.length) onFrames(c, buf.subarray(r));
    };
    sock.on('data', onFirst);
    sock.on('error', () => {});
  });

  const heartbeat = setInterval(() => {
    for (const c of conns) {
      if (!c.alive) { c.sock.destroy(); continue; }
      c.alive = false;
      c.sock.write(PING);
    }
  }, PING_INTERVAL_MS);
  heartbeat.unref();
  server.on('close', () => clearInterval(heartbeat));

  return { server, connections: () => conns.size, hub };
}
