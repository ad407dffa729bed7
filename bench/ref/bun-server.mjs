// Anchor: Bun.serve's WebSocket server (uWebSockets inside), run by the `bun`
// devDependency's binary. Same hello/welcome/publish protocol as Tidings
// (common.mjs: jose token check, bounded history per channel), with Bun's
// native topics for fan-out (ws.subscribe + server.publish: the frame is
// built once in C++ and written to every subscriber), and its built-in
// protocol-level pings for liveness. The fastest path Bun offers.
import { createHub, HELLO_TIMEOUT_MS } from './common.mjs';
import { BENCH_SECRET, BENCH_PUBLISHER_KEY } from '../lib/token.mjs';

const hub = createHub({ secret: BENCH_SECRET, publisherKey: BENCH_PUBLISHER_KEY });
const JSON_HEADERS = { 'content-type': 'application/json' };

const server = Bun.serve({
  hostname: '127.0.0.1',
  port: 0,
  async fetch(req, srv) {
    const url = new URL(req.url);
    if (url.pathname === '/v1/ws') {
      const proto = (req.headers.get('sec-websocket-protocol') ?? '').split(',').map((s) => s.trim()).includes('tidings.v1');
      if (srv.upgrade(req, { data: { channels: null, closed: false, at: Date.now() }, headers: proto ? { 'Sec-WebSocket-Protocol': 'tidings.v1' } : {} })) return undefined;
      return new Response('{"error":"bad_upgrade"}', { status: 400, headers: JSON_HEADERS });
    }
    if (req.method === 'POST' && url.pathname === '/v1/publish') {
      const r = hub.publish(req.headers.get('authorization'), await req.text());
      if (r.event) srv.publish(r.event.channel, r.event.text);
      return new Response(r.body, { status: r.status, headers: JSON_HEADERS });
    }
    if (url.pathname === '/healthz') return new Response('ok');
    return new Response('', { status: 404 });
  },
  websocket: {
    maxPayloadLength: 64 * 1024,
    perMessageDeflate: false,
    idleTimeout: 120,
    sendPings: true,
    async message(ws, message) {
      const d = ws.data;
      if (d.channels !== null) return; // pongs and the like: liveness only
      if (Date.now() - d.at > HELLO_TIMEOUT_MS) { ws.close(4408, 'no hello'); return; }
      const r = await hub.hello(typeof message === 'string' ? message : Buffer.from(message).toString());
      if (d.closed) return;
      if (r.close) { ws.close(r.close, r.reason); return; }
      d.channels = r.names;
      for (const n of r.names) ws.subscribe(n);
      ws.send(hub.welcome(r.names));
    },
    close(ws) { ws.data.closed = true; },
  },
});
console.log(`listening on http://127.0.0.1:${server.port}`);
