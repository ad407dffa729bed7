// Reference 1: `ws` 8 on http.Server, written the way its README suggests
// (noServer + handleUpgrade, one heartbeat interval for all clients), doing
// the same hello/welcome/subscribe protocol as Tidings.
import http from 'node:http';
import { WebSocketServer } from 'ws';
import { createHub, readBody, PING_INTERVAL_MS, HELLO_TIMEOUT_MS } from './common.mjs';

export function createWsServer({ secret, publisherKey }) {
  const hub = createHub({ secret, publisherKey });
  const wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    maxPayload: 64 * 1024,
    handleProtocols: (protocols) => (protocols.has('tidings.v1') ? 'tidings.v1' : false),
  });

  const server = http.createServer(async (req, res) => {
    if (req.method === 'POST' && req.url === '/v1/publish') {
      let body;
      try { body = await readBody(req); } catch { res.writeHead(413).end(); return; }
      const r = hub.publish(req.headers.authorization, body);
      if (r.event) for (const ws of r.event.subs) ws.send(r.event.text);
      res.writeHead(r.status, { 'content-type': 'application/json' }).end(r.body);
      return;
    }
    if (req.url === '/healthz') { res.end('ok'); return; }
    res.writeHead(404).end();
  });

  server.on('upgrade', (req, socket, head) => {
    if (!req.url.startsWith('/v1/ws')) { socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n'); return; }
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  });

  wss.on('connection', (ws) => {
    ws.isAlive = true;
    ws.channels = null;
    const helloTimer = setTimeout(() => ws.close(4408, 'no hello'), HELLO_TIMEOUT_MS);
    ws.on('message', async (data) => {
      ws.isAlive = true;
      if (ws.channels !== null) return; // pong or anything after hello: only liveness matters
      const text = data.toString();
      const r = await hub.hello(text);
      if (r.close) { ws.close(r.close, r.reason); return; }
      clearTimeout(helloTimer);
      ws.channels = r.names;
      ws.send(hub.subscribe(ws, r.names));
    });
    ws.on('close', () => { clearTimeout(helloTimer); if (ws.channels) hub.unsubscribe(ws, ws.channels); });
    ws.on('error', () => {});
  });

  // One interval for every client, as in ws's README heartbeat example.
  const heartbeat = setInterval(() => {
    for (const ws of wss.clients) {
      if (!ws.isAlive) { ws.terminate(); continue; }
      ws.isAlive = false;
      ws.send('{"type":"ping"}');
    }
  }, PING_INTERVAL_MS);
  heartbeat.unref();
  server.on('close', () => clearInterval(heartbeat));

  return { server, connections: () => wss.clients.size, hub };
}
