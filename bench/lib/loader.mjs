// A load-generating process: up to a few thousand raw TCP WebSocket clients
// bound to one local address (127.0.0.x), driven by the parent over IPC.
// Each client sends a fixed upgrade request, waits for the 101, sends a masked
// hello, waits for welcome, answers pings, and counts events.
//
// The clients are libuv TCP handles driven directly (Node's tcp_wrap binding,
// the layer under net.Socket), not net.Socket streams: a loader is test
// equipment sharing the 2 cores with the server it measures, and a net.Socket
// per client (stream state machines, closures, a timer and a promise each) cost
// ~430 µs of loader CPU per connect, a third of all the CPU of a connect storm
// (bench/NOTES.md). A client here is one small object; its deadline is checked
// by one sweep per second; each read is parsed in place. It still checks what a
// client must: the 101 and its Sec-WebSocket-Accept, the welcome, every event.
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { getSystemErrorName } from 'node:util';
import { upgradeRequest, helloFrame, PONG_FRAME, maskedClose, maskedFrame, parseFrames, isPingText, headEnd, acceptFor, CLIENT_KEY } from './wire.mjs';
import { signTokenSync } from './token.mjs';
import { nowMs } from './stats.mjs';

// process.binding is deprecated (DEP0111) but still serves these two (its allow-list).
const { TCP, TCPConnectWrap, constants: TCP_CONSTANTS } = process.binding('tcp_wrap');
const { WriteWrap, kReadBytesOrError, kArrayBufferOffset, kLastWriteWasAsync, streamBaseState } = process.binding('stream_wrap');

const ACCEPT = acceptFor(CLIENT_KEY);
const STATUS_101 = Buffer.from('HTTP/1.1 101');
const ACCEPT_BYTES = Buffer.from(ACCEPT, 'latin1');
const WELCOME_PREFIX = Buffer.from('{"type":"welcome"');
const UV_EOF = -4095;
const conns = [];
let expectState = null;

function send(m) { process.send(m); }

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

// ---------------------------------------------------------------------------
// One client: a TCP handle and this object. Stages: 0 upgrade sent, 1 hello
// sent, 2 welcomed (live), -1 gone.

class Client {
  constructor(run, user, hello) {
    this.run = run;
    this.user = user;
    this.hello = hello;
    this.h = null;
    this.stage = 0;
    this.left = null;
    this.count = 0;
    this.got = 0;
    this.closeCode = 0;
    this.due = 0;
    /** Local ports tried after the connect itself was refused (see afterConnect). */
    this.retries = 0;
  }
}

/** Write `buf` on a client's handle; false (and the client failed) on an error. */
function write(c, buf) {
  const h = c.h;
  if (h === null) return false;
  const req = new WriteWrap();
  req.handle = h;
  req.oncomplete = onWriteDone;
  req.async = false;
  const err = h.writeBuffer(req, buf);
  if (err !== 0) { fail(c, `write ${getSystemErrorName(err)}`); return false; }
  // Written to the kernel at once nearly always; otherwise libuv holds it: keep it alive.
  if (streamBaseState[kLastWriteWasAsync]) req.buffer = buf;
  return true;
}
function onWriteDone(status) {
  if (status < 0) { const c = this.handle.client; if (c) fail(c, `write ${getSystemErrorName(status)}`); }
}

function close(c) {
  const h = c.h;
  if (h === null) return;
  c.h = null;
  h.client = null;
  h.close();
}

/** The handshake of `c` ended (welcome: ok; anything else: why). */
function settle(c, ok, why) {
  const r = c.run;
  if (r === null) return;
  c.run = null;
  r.pending.delete(c);
  if (ok) { r.ok++; conns.push(c); } else r.why[why] = (r.why[why] ?? 0) + 1;
  r.finished++;
  next(r);
}

function fail(c, why) {
  const live = c.stage === 2;
  c.stage = -1;
  close(c);
  if (!live) settle(c, false, why);
}

// Local ports are chosen here, one after the other, not by the kernel: bind()
// to port 0 makes Linux search its bind table for a free port, and with tens
// of thousands of ports of one address in use (and more in TIME_WAIT from a
// previous run) that search cost up to 2 ms of kernel CPU per connect
// (inet_csk_get_port in a profile of the loaders). A given port is one hash
// lookup. libuv binds with SO_REUSEADDR and loopback reuses TIME_WAIT
// (tcp_tw_reuse), so a port left from an earlier run is taken again; one
// really in use (EADDRINUSE, EADDRNOTAVAIL) is skipped.
//
// Below the kernel's ephemeral range (ip_local_port_range): a port bound
// explicitly, and its TIME_WAIT for a minute after, is never handed to an
// unbound connect on any address, so 100,000 of them spread over that range
// left none for the servers' Redis connections and the bench's HTTP publisher:
// EADDRNOTAVAIL in the next shape once connecting got faster than TIME_WAIT.
function portRange() {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    if (low >= 20_000) return [1_024, low];
  } catch { /* not Linux: any range */ }
  return [10_000, 32_768];
}
const [PORT_LOW, PORT_HIGH] = portRange();
let nextPort = PORT_LOW + Math.floor(Math.random() * (PORT_HIGH - PORT_LOW));
const PORT_TRIES = 64;

function open(r, c) {
  let err = 0;
  for (let tries = 0; tries < PORT_TRIES; tries++) {
    const h = new TCP(TCP_CONSTANTS.SOCKET);
    const port = nextPort;
    nextPort = nextPort + 1 >= PORT_HIGH ? PORT_LOW : nextPort + 1;
    err = h.bind(r.localAddress, port);
    if (err === 0) {
      const req = new TCPConnectWrap();
      req.oncomplete = afterConnect;
      req.address = '127.0.0.1';
      req.port = r.port;
      err = h.connect(req, '127.0.0.1', r.port);
    }
    if (err === 0) {
      c.h = h;
      h.client = c;
      h.onread = onRead;
      return;
    }
    h.close();
    const name = getSystemErrorName(err);
    if (name !== 'EADDRINUSE' && name !== 'EADDRNOTAVAIL') break;
  }
  fail(c, getSystemErrorName(err));
}

function afterConnect(status, h) {
  const c = h.client;
  if (!c) return;
  if (status < 0) {
    const name = getSystemErrorName(status);
    // The bind took a port whose connection to this server is still in
    // TIME_WAIT (the range below the ephemeral one is small enough to come
    // round again within a minute): the next port, as open() does.
    if ((name === 'EADDRINUSE' || name === 'EADDRNOTAVAIL') && ++c.retries <= PORT_TRIES && c.run !== null) {
      close(c);
      return open(c.run, c);
    }
    return fail(c, name);
  }
  h.setNoDelay(true);
  const err = h.readStart();
  if (err !== 0) return fail(c, getSystemErrorName(err));
  write(c, c.run.upgrade);
}

function onRead(arrayBuffer) {
  const c = this.client;
  if (!c) return;
  const n = streamBaseState[kReadBytesOrError];
  if (n < 0) {
    // EOF or an error: the server closed (or reset) the connection.
    return fail(c, n === UV_EOF ? 'closed' : getSystemErrorName(n));
  }
  if (n === 0) return;
  const chunk = Buffer.from(arrayBuffer, streamBaseState[kArrayBufferOffset], n);
  if (c.stage === 0) {
    const buf = c.left ? Buffer.concat([c.left, chunk]) : chunk;
    const end = headEnd(buf);
    if (end < 0) { c.left = Buffer.from(buf); return; }
    c.left = null;
    // The 101 and the Sec-WebSocket-Accept for our key, checked on the bytes.
    const acceptAt = buf.indexOf(ACCEPT_BYTES);
    if (buf.compare(STATUS_101, 0, STATUS_101.length, 0, STATUS_101.length) !== 0 || acceptAt < 0 || acceptAt > end) {
      return fail(c, buf.toString('latin1', 0, Math.max(0, buf.indexOf('\r\n'))));
    }
    c.stage = 1;
    const hello = c.hello;
    c.hello = null;
    if (!write(c, hello)) return;
    if (end < buf.length) c.left = parseFrames(null, buf.subarray(end), onFrameOf(c));
    return;
  }
  c.left = parseFrames(c.left, chunk, onFrameOf(c));
}

// parseFrames calls onFrame(op, buf, s, e); the client it is for is passed through this slot.
let current = null;
const onFrameShared = (op, buf, s, e) => onFrame(current, op, buf, s, e);
function onFrameOf(c) { current = c; return onFrameShared; }

function onFrame(c, op, buf, s, e) {
  if (c.stage < 0) return;
  if (op === 0x1) {
    // A server may ping before welcome (a heartbeat sweep over every socket): answer, keep waiting.
    if (isPingText(buf, s, e)) write(c, PONG_FRAME);
    else if (c.stage === 1) {
      if (e - s >= WELCOME_PREFIX.length && buf.compare(WELCOME_PREFIX, 0, WELCOME_PREFIX.length, s, s + WELCOME_PREFIX.length) === 0) { c.stage = 2; settle(c, true); }
      else fail(c, `expected welcome, got ${buf.toString('utf8', s, Math.min(e, s + 80))}`);
    } else if (c.stage === 2) onEvent(c, buf, s, e);
  } else if (op === 0x9) {
    // RFC 6455 §5.5.3: answer a ping frame with a pong carrying the same payload.
    write(c, maskedFrame(0xa, Buffer.from(buf.subarray(s, e))));
  } else if (op === 0x8) {
    c.closeCode = e - s >= 2 ? buf.readUInt16BE(s) : 1005;
    fail(c, `closed ${c.closeCode}`);
  }
}

// ---------------------------------------------------------------------------
// A connect run: `count` clients, at most `concurrency` handshakes in flight,
// none started after `deadline`; each handshake has `timeoutMs`.

/** Hello frames built ahead ('prepare'), so that signing tokens is not in the connect phase. */
let prepared = null;

function helloFor(m, i) {
  if (prepared !== null && prepared.startIndex === m.startIndex && prepared.channelMode === m.channelMode && i < prepared.hellos.length) return prepared.hellos[i];
  if (m.channelMode === 'one') return (m.sharedHello ??= helloFrame(signTokenSync('bench', [m.channel]), { [m.channel]: null }));
  const ch = `user:${m.startIndex + i}`;
  return helloFrame(signTokenSync(`u${m.startIndex + i}`, [ch]), { [ch]: null });
}

function next(r) {
  while (r.started < r.m.count && r.started - r.finished < r.concurrency && Date.now() < r.deadline) {
    const i = r.started++;
    const c = new Client(r, r.m.startIndex + i, helloFor(r.m, i));
    c.due = Date.now() + r.timeoutMs;
    r.pending.add(c);
    open(r, c);
  }
  if (r.finished === r.started && (r.started === r.m.count || Date.now() >= r.deadline) && !r.reported) {
    r.reported = true;
    clearInterval(r.sweep);
    send({ ev: 'connected', ok: r.ok, failed: r.started - r.ok, notStarted: r.m.count - r.started, why: r.why, ms: nowMs() - r.t0 });
  }
}

function connect(m) {
  const r = {
    m, t0: nowMs(), port: m.port, localAddress: m.localAddress,
    upgrade: upgradeRequest('127.0.0.1', m.port),
    concurrency: m.concurrency ?? 64, timeoutMs: m.timeoutMs ?? 30_000, deadline: m.deadline ?? Infinity,
    started: 0, finished: 0, ok: 0, why: {}, pending: new Set(), reported: false, sweep: null,
  };
  // One timer for every handshake deadline, not one per client.
  r.sweep = setInterval(() => {
    const now = Date.now();
    for (const c of r.pending) if (c.due <= now) fail(c, `timeout in stage ${c.stage}`);
    next(r); // the start deadline may have passed with nothing in flight
  }, 1000);
  next(r);
}

/** Run `n` tasks with at most `limit` in flight (churn: a few thousand at most, net.Socket is fine there). */
async function pool(n, limit, task) {
  let next = 0;
  const worker = async () => { while (next < n) { await task(next++); } };
  await Promise.all(Array.from({ length: Math.min(limit, n) }, worker));
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
    case 'prepare': {
      prepared = null;
      const hellos = Array.from({ length: m.count }, (_, i) => helloFor(m, i));
      prepared = { startIndex: m.startIndex, channelMode: m.channelMode, hellos };
      send({ ev: 'prepared' });
      break;
    }
    case 'connect': connect(m); break;
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
      for (const c of conns) { c.stage = -1; close(c); }
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
