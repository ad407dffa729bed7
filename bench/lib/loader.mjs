// A load-generating process: up to a few thousand raw TCP WebSocket clients
// bound to one local address (127.0.0.x), driven by the parent over IPC.
// Each client sends a fixed upgrade request, waits for the 101, sends a masked
// hello, waits for welcome, answers pings, and counts events.
import net from 'node:net';
import { upgradeRequest, helloFrame, PONG_FRAME, maskedClose, parseFrames, isPingText, headEnd, acceptFor, CLIENT_KEY } from './wire.mjs';
import { signTokenSync } from './token.mjs';
import { nowMs } from './stats.mjs';

const ACCEPT = acceptFor(CLIENT_KEY);
const conns = [];
let expectState = null;

function send(m) { process.send(m); }

/** Run `n` tasks with at most `limit` in flight; none is started after `deadline` (epoch ms). Returns how many started. */
async function pool(n, limit, task, deadline = Infinity) {
  let next = 0;
  const worker = async () => { while (next < n && Date.now() < deadline) { const i = next++; await task(i); } };
  await Promise.all(Array.from({ length: Math.min(limit, n) }, worker));
  return next;
}

/** While armed by 'latencyStart': publish→delivery times (data carries the publish time as "t") and counts per client. */
let latency = null;
const T_KEY = Buffer.from('"t":');

function onEvent(c, buf, start, end) {
  if (latency !== null) {
    c.got++;
    const at = buf.indexOf(T_KEY, start);
    if (at >= 0 && at < end) latency.push(nowMs() - parseFloat(buf.toString('latin1', at + 4, Math.min(end, at + 40))));
  }
  const k = ++c.count;
  const e = expectState;
  if (!e || k > e.events) return;
  if (++e.arrivals[k] === e.live) e.times[k] = nowMs();
  if (k === e.events && e.arrivals[k] === e.live) finishExpect();
}

function finishExpect() {
  const e = expectState;
  if (!e) return;
  expectState = null;
  clearTimeout(e.timer);
  const missing = [];
  for (let k = 1; k <= e.events; k++) missing.push(e.live - e.arrivals[k]);
  send({ ev: 'delivered', times: e.times.slice(1), missing, live: e.live });
}

function openOne({ port, localAddress, hello, timeoutMs }) {
  return new Promise((resolve) => {
    const c = { sock: null, stage: 0, left: null, count: 0, closeCode: 0, user: -1, got: 0 };
    let done = false;
    const finish = (ok, why) => { if (done) return; done = true; clearTimeout(t); resolve({ ok, why, c }); };
    const t = setTimeout(() => { finish(false, `timeout in stage ${c.stage}`); c.sock.destroy(); }, timeoutMs);
    const sock = (c.sock = net.connect({ host: '127.0.0.1', port, localAddress }));
    sock.setNoDelay(true);
    sock.on('connect', () => sock.write(upgradeRequest('127.0.0.1', port)));
    const onFrame = (op, buf, s, e) => {
      if (op === 0x1) {
        // A server may ping before welcome (a heartbeat sweep over every socket): answer, keep waiting.
        if (isPingText(buf, s, e)) sock.write(PONG_FRAME);
        else if (c.stage === 1) {
          if (buf.toString('latin1', s, Math.min(e, s + 17)) === '{"type":"welcome"') { c.stage = 2; finish(true); }
          else { finish(false, `expected welcome, got ${buf.toString('utf8', s, Math.min(e, s + 80))}`); c.stage = -1; sock.destroy(); }
        } else if (c.stage === 2) onEvent(c, buf, s, e);
      } else if (op === 0x9) {
        // RFC 6455 §5.5.3: answer a ping frame with a pong carrying the same payload.
        const p = Buffer.from(buf.subarray(s, e));
        sock.write(Buffer.concat([Buffer.from([0x8a, 0x80 | p.length, 0, 0, 0, 0]), p]));
      } else if (op === 0x8) {
        c.closeCode = e - s >= 2 ? buf.readUInt16BE(s) : 1005;
        sock.end();
      }
    };
    sock.on('data', (chunk) => {
      if (c.stage === 0) {
        const buf = c.left ? Buffer.concat([c.left, chunk]) : chunk;
        const end = headEnd(buf);
        if (end < 0) { c.left = buf; return; }
        c.left = null;
        const head = buf.toString('latin1', 0, end);
        if (!head.startsWith('HTTP/1.1 101') || !head.includes(ACCEPT)) { finish(false, head.split('\r\n')[0]); sock.destroy(); return; }
        c.stage = 1;
        sock.write(hello);
        if (end < buf.length) c.left = parseFrames(null, buf.subarray(end), onFrame);
        return;
      }
      c.left = parseFrames(c.left, chunk, onFrame);
    });
    sock.on('error', (err) => finish(false, err.code ?? err.message));
    sock.on('close', () => { c.stage = -1; finish(false, 'closed'); });
  });
}

async function connect(m) {
  const t0 = nowMs();
  const why = {};
  let ok = 0;
  const shared = m.channelMode === 'one' ? helloFrame(signTokenSync('bench', [m.channel]), { [m.channel]: null }) : null;
  const started = await pool(m.count, m.concurrency ?? 64, async (i) => {
    let hello = shared;
    if (!hello) {
      const ch = `user:${m.startIndex + i}`;
      hello = helloFrame(signTokenSync(`u${m.startIndex + i}`, [ch]), { [ch]: null });
    }
    const r = await openOne({ port: m.port, localAddress: m.localAddress, hello, timeoutMs: m.timeoutMs ?? 30_000 });
    r.c.user = m.startIndex + i;
    if (r.ok) { ok++; conns.push(r.c); } else why[r.why] = (why[r.why] ?? 0) + 1;
  }, m.deadline ?? Infinity);
  send({ ev: 'connected', ok, failed: started - ok, notStarted: m.count - started, why, ms: nowMs() - t0 });
}

function churnOne({ port, localAddress, timeoutMs }) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port, localAddress });
    let left = null;
    let upgraded = false;
    let done = false;
    const finish = (ok) => { if (!done) { done = true; clearTimeout(t); resolve(ok); } };
    const t = setTimeout(() => { sock.destroy(); finish(false); }, timeoutMs);
    sock.on('connect', () => sock.write(upgradeRequest('127.0.0.1', port)));
    sock.on('data', (chunk) => {
      const buf = left ? Buffer.concat([left, chunk]) : chunk;
      if (!upgraded) {
        const end = headEnd(buf);
        if (end < 0) { left = buf; return; }
        left = null;
        if (!buf.toString('latin1', 0, 12).startsWith('HTTP/1.1 101')) { sock.destroy(); finish(false); return; }
        upgraded = true;
        // Close handshake from the client (RFC 6455 §7.1.2); the server answers and closes TCP.
        sock.write(maskedClose(1000));
      }
    });
    sock.on('error', () => finish(false));
    sock.on('close', () => finish(upgraded));
  });
}

async function churn(m) {
  const t0 = nowMs();
  let ok = 0;
  await pool(m.count, m.concurrency ?? 16, async () => { if (await churnOne({ port: m.port, localAddress: m.localAddress, timeoutMs: m.timeoutMs ?? 10_000 })) ok++; });
  send({ ev: 'churned', ok, failed: m.count - ok, ms: nowMs() - t0 });
}

process.on('message', async (m) => {
  switch (m.cmd) {
    case 'connect': await connect(m); break;
    case 'expect': {
      const live = conns.filter((c) => c.stage === 2);
      for (const c of live) c.count = 0;
      expectState = { events: m.events, live: live.length, arrivals: new Int32Array(m.events + 1), times: new Array(m.events + 1).fill(null), timer: setTimeout(finishExpect, m.timeoutMs) };
      send({ ev: 'armed', live: live.length });
      if (live.length === 0) finishExpect();
      break;
    }
    case 'latencyStart': {
      latency = [];
      for (const c of conns) c.got = 0;
      send({ ev: 'latencyArmed' });
      break;
    }
    case 'latencyStop': {
      // Only clients still open count: a client that failed or was closed has no claim on its events.
      const users = [], got = [];
      let closed = 0;
      for (const c of conns) {
        if (c.stage === 2) { users.push(c.user); got.push(c.got); } else closed++;
      }
      send({ ev: 'latency', times: latency, users, got, closed });
      latency = null;
      break;
    }
    case 'churn': await churn(m); break;
    case 'closeAll': {
      for (const c of conns) c.sock.destroy();
      const closed = conns.length;
      conns.length = 0;
      send({ ev: 'closedAll', closed });
      break;
    }
    case 'exit': process.exit(0);
  }
});
process.on('disconnect', () => process.exit(0));
send({ ev: 'ready' });
