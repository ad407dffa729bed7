// Anchor: uWebSockets.js (the `uwebsockets` devDependency, a republish of
// uWebSockets.js v20 binaries), run with a Node 20 binary: its prebuilt
// addons load with Node 20's ABI here, not with this machine's Node 24 build.
// Same protocol as Tidings (common.mjs), native topics for fan-out
// (ws.subscribe + app.publish), built-in pings for liveness.
import { createRequire } from 'node:module';
import { createHub, HELLO_TIMEOUT_MS } from './common.mjs';
import { BENCH_SECRET, BENCH_PUBLISHER_KEY } from '../lib/token.mjs';

const uWS = createRequire(import.meta.url)('uwebsockets');
const hub = createHub({ secret: BENCH_SECRET, publisherKey: BENCH_PUBLISHER_KEY });
const decoder = new TextDecoder();

const app = uWS.App()
  .ws('/v1/ws', {
    maxPayloadLength: 64 * 1024,
    idleTimeout: 120,
    sendPingsAutomatically: true,
    upgrade(res, req, context) {
      const proto = req.getHeader('sec-websocket-protocol').split(',').map((s) => s.trim()).includes('tidings.v1') ? 'tidings.v1' : '';
      res.upgrade({ channels: null, closed: false, at: Date.now() }, req.getHeader('sec-websocket-key'), proto, req.getHeader('sec-websocket-extensions'), context);
    },
    async message(ws, message) {
      const d = ws.getUserData();
      if (d.channels !== null) return;
      if (Date.now() - d.at > HELLO_TIMEOUT_MS) { ws.end(4408, 'no hello'); return; }
      const r = await hub.hello(decoder.decode(message));
      if (d.closed) return; // a closed uWS.WebSocket must not be touched
      if (r.close) { ws.end(r.close, r.reason); return; }
      d.channels = r.names;
      for (const n of r.names) ws.subscribe(n);
      ws.send(hub.welcome(r.names), false);
    },
    close(ws) { ws.getUserData().closed = true; },
  })
  .post('/v1/publish', (res, req) => {
    const auth = req.getHeader('authorization');
    const parts = [];
    let aborted = false;
    res.onAborted(() => { aborted = true; });
    res.onData((chunk, last) => {
      parts.push(Buffer.from(chunk.slice(0)));
      if (!last || aborted) return;
      const r = hub.publish(auth, Buffer.concat(parts).toString());
      if (r.event) app.publish(r.event.channel, r.event.text, false);
      res.cork(() => res.writeStatus(r.status === 200 ? '200 OK' : `${r.status} Error`).writeHeader('content-type', 'application/json').end(r.body));
    });
  })
  .get('/healthz', (res) => { res.end('ok'); })
  .listen('127.0.0.1', 0, (token) => {
    if (!token) { console.error('uws: cannot listen'); process.exit(1); }
    console.log(`listening on http://127.0.0.1:${uWS.us_socket_local_port(token)}`);
  });
