// A reconnect-storm client process: `count` real clients in one Node process,
// either the Tidings SDK (dist/tidings.mjs, on Node's global WebSocket) or
// reconnecting-websocket with its default options speaking the same protocol
// by hand. Records, per client, when it is (re)connected (welcome received)
// and what it received after the restart, so the parent can check that
// nobody lost an event: every client resumes or gets `reset`.
import { pathToFileURL } from 'node:url';
import { nowMs } from './stats.mjs';
import { signToken } from './token.mjs';

const clients = [];
let restartAt = Infinity;

function track(i, channel) {
  return { i, channel, open: false, opens: [], pre: 0, post: [], resets: 0, dupes: 0, closes: {}, transport: () => null, polled: false };
}

/** A post-restart event: seq k of its channel's K. Pre-restart events only count. */
function onEventData(c, data) {
  if (data?.phase === 'post') c.post.push(data.seq);
  else if (data?.phase === 'pre') c.pre++;
}

function opened(c) {
  c.open = true;
  c.opens.push(nowMs());
}

async function startSdk(m, i, token, channel) {
  const { createClient } = await import(pathToFileURL(m.sdkPath).href);
  const c = track(i, channel);
  // 'sdk': WebSocket only; 'sdk-auto': the default transport, free to fall back to polling.
  const auto = m.mode === 'sdk-auto';
  const client = createClient({ url: m.url, token, channels: [channel], transport: auto ? 'auto' : 'websocket' });
  client.on('state', (s) => {
    if (s === 'polling') c.polled = true;
    // With 'auto' a client that delivers by polling is back too (it is counted per transport in the report).
    if (s === 'open' || (auto && s === 'polling')) opened(c); else c.open = false;
  });
  c.transport = () => client.transport;
  client.on('event', (e) => onEventData(c, e.data));
  client.on('reset', () => { if (nowMs() > restartAt) c.resets++; });
  c.close = () => client.close();
  return c;
}

async function startRws(m, i, token, channel) {
  const { default: RWS } = await import('reconnecting-websocket');
  const c = track(i, channel);
  let cursor = null;
  // reconnecting-websocket draws its default minReconnectionDelay (1000 + random * 4000)
  // once per module load, i.e. once per browser page. Here thousands of "pages" share
  // one module, so each client draws its own value from the same default distribution.
  const ws = new RWS(m.url.replace(/^http/, 'ws') + '/v1/ws', 'tidings.v1', { WebSocket: globalThis.WebSocket, minReconnectionDelay: 1000 + Math.random() * 4000 });
  ws.addEventListener('open', () => ws.send(JSON.stringify({ type: 'hello', token, channels: { [channel]: cursor } })));
  ws.addEventListener('close', (e) => { c.open = false; c.closes[e.code] = (c.closes[e.code] ?? 0) + 1; });
  ws.addEventListener('message', (e) => {
    const msg = JSON.parse(e.data);
    switch (msg.type) {
      case 'welcome': cursor ??= msg.channels[channel]; opened(c); break;
      case 'event': cursor = msg.cursor; onEventData(c, msg.data); break;
      case 'reset': cursor = msg.cursor; if (nowMs() > restartAt) c.resets++; break;
      case 'ping': ws.send('{"type":"pong"}'); break;
    }
  });
  c.close = () => ws.close();
  return c;
}

process.on('message', async (m) => {
  switch (m.cmd) {
    case 'start': {
      const start = m.mode === 'rws' ? startRws : startSdk;
      const gap = m.rampMs / Math.max(1, m.count);
      for (let k = 0; k < m.count; k++) {
        const i = m.startIndex + k;
        const channel = `room:${i % m.channels}`;
        clients.push(await start(m, i, await signToken(`u${i}`, [channel], 3600), channel));
        await new Promise((r) => setTimeout(r, gap));
      }
      const deadline = Date.now() + m.timeoutMs;
      while (clients.some((c) => !c.open) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      process.send({ ev: 'started', open: clients.filter((c) => c.open).length });
      break;
    }
    case 'restart': restartAt = m.at; process.send({ ev: 'marked' }); break;
    case 'status': process.send({ ev: 'status', open: clients.filter((c) => c.open && c.opens.at(-1) > restartAt).length }); break;
    case 'report': {
      const rows = clients.map((c) => {
        const back = c.opens.find((t) => t > restartAt) ?? null;
        const p = c.post;
        let ordered = true;
        for (let k = 1; k < p.length; k++) if (p[k] <= p[k - 1]) ordered = false;
        // Contiguous up to the last event published (K): all of 1..K, or with a reset
        // a tail run m..K (the events before m are covered by the reset).
        const last = m.events[c.channel]; // events published to this client's channel after the restart
        const contiguousTail = p.length > 0 && p[p.length - 1] === last && p.every((s, k) => s === p[0] + k);
        const ok = ordered && c.pre >= 1 && (c.resets > 0 ? contiguousTail : contiguousTail && p[0] === 1);
        return { back, ok, resets: c.resets, got: p.length, pre: c.pre, closes: c.closes, transport: c.transport(), polled: c.polled };
      });
      process.send({ ev: 'report', rows });
      break;
    }
    case 'exit':
      for (const c of clients) try { c.close(); } catch {}
      setTimeout(() => process.exit(0), 200);
  }
});
process.on('disconnect', () => process.exit(0));
process.send({ ev: 'ready' });
