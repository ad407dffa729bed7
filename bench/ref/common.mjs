// What the reference servers share: the same hello/welcome/subscribe/publish
// protocol as Tidings (PROTOCOL.md), kept minimal but complete enough that the
// reference holds equivalent per-connection state (token checked, a Map of
// subscriptions, a bounded history per channel).
import { jwtVerify } from 'jose';

const CHANNEL = /^[A-Za-z0-9:_.\-]{1,128}$/;
const EPOCH = Date.now().toString(36);

export function createHub({ secret, publisherKey, history = 1000 }) {
  const key = new TextEncoder().encode(secret);
  /** channel -> { seq, events: string[] (serialized event JSON), subs: Set } */
  const channels = new Map();

  function channel(name) {
    let c = channels.get(name);
    if (!c) { c = { seq: 0, events: [], subs: new Set() }; channels.set(name, c); }
    return c;
  }
  const head = (c) => `${EPOCH}-${c.seq}`;

  /** Verify a hello; resolves to { names, cursors } or { close, reason }. */
  async function hello(text) {
    let msg;
    try { msg = JSON.parse(text); } catch { return { close: 4400, reason: 'not JSON' }; }
    if (!msg || msg.type !== 'hello' || typeof msg.channels !== 'object' || !msg.channels) return { close: 4400, reason: 'bad hello' };
    let claims;
    try { claims = (await jwtVerify(String(msg.token), key, { algorithms: ['HS256'] })).payload; }
    catch { return { close: 4401, reason: 'bad token' }; }
    const names = Object.keys(msg.channels);
    for (const n of names) {
      if (!CHANNEL.test(n)) return { close: 4400, reason: 'bad channel' };
      if (!Array.isArray(claims.ch) || !claims.ch.includes(n)) return { close: 4403, reason: 'not granted' };
    }
    return { names };
  }

  /** Subscribe `conn` and build the welcome text. */
  function subscribe(conn, names) {
    const heads = {};
    for (const n of names) { const c = channel(n); c.subs.add(conn); heads[n] = head(c); }
    return `{"type":"welcome","ping":25000,"channels":${JSON.stringify(heads)}}`;
  }

  /** The welcome text without tracking subscribers here (servers with native pub/sub topics: Bun, uWebSockets.js). */
  function welcome(names) {
    const heads = {};
    for (const n of names) heads[n] = head(channel(n));
    return `{"type":"welcome","ping":25000,"channels":${JSON.stringify(heads)}}`;
  }

  function unsubscribe(conn, names) {
    for (const n of names) {
      const c = channels.get(n);
      if (c) { c.subs.delete(conn); if (c.subs.size === 0 && c.seq === 0) channels.delete(n); }
    }
  }

  /** Parse and authorize a publish; returns { status, body, event?: {text, subs} }. */
  function publish(auth, body) {
    if (auth !== `Bearer ${publisherKey}`) return { status: 401, body: '{"error":"unauthorized","message":"bad publisher key"}' };
    let msg;
    try { msg = JSON.parse(body); } catch { return { status: 400, body: '{"error":"bad_json","message":"body is not JSON"}' }; }
    if (!msg || typeof msg.channel !== 'string' || !CHANNEL.test(msg.channel)) return { status: 400, body: '{"error":"bad_channel","message":"bad channel"}' };
    const c = channel(msg.channel);
    c.seq++;
    const cursor = head(c);
    // Serialized once per event (both references do at least this much).
    const text = `{"type":"event","channel":${JSON.stringify(msg.channel)},"cursor":"${cursor}","data":${JSON.stringify(msg.data ?? null)}}`;
    c.events.push(text);
    if (c.events.length > history) c.events.shift();
    return { status: 200, body: `{"cursor":"${cursor}"}`, event: { text, subs: c.subs, channel: msg.channel } };
  }

  return { hello, subscribe, welcome, unsubscribe, publish, channels };
}

/** Read a request body (bounded) from an IncomingMessage. */
export function readBody(req, limit = 1 << 20) {
  return new Promise((resolve, reject) => {
    const parts = [];
    let size = 0;
    req.on('data', (d) => { size += d.length; if (size > limit) { reject(new Error('too large')); req.destroy(); } else parts.push(d); });
    req.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
    req.on('error', reject);
  });
}

export const PING_INTERVAL_MS = 25_000;
export const HELLO_TIMEOUT_MS = 10_000;
