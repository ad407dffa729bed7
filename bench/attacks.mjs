#!/usr/bin/env node
// Hostile-client runs against a real server process (issue 12): each attack is
// bounded in count and time and stops by itself. The server runs as a child
// process (node <dir>/dist/server/main.js) so its CPU and RSS can be read from
// /proc; the attackers run here, on loopback addresses 127.0.0.2 and up.
//
//   node bench/attacks.mjs [--dir <checkout with dist/server built>] [--only a,b] [--label x]
//
// Attacks: connect (empty-connect flood vs real upgrades), publish (publish
// flood vs 1,000 subscribers), slowloris (HTTP heads that never finish),
// fragments (endless empty continuation frames), replay (stalled clients asking
// for a large history), backlog (a burst of simultaneous connects).
// Prints one JSON object per attack. Linux only (/proc).
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { BENCH_PUBLISHER_KEY, BENCH_SECRET, signToken } from './lib/token.mjs';
import { helloFrame, maskedFrame, parseFrames, upgradeRequest } from './lib/wire.mjs';

const ALL = ['connect', 'publish', 'slowloris', 'fragments', 'replay', 'backlog'];
const args = process.argv.slice(2);
const opt = (name, def) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : def; };
const DIR = opt('dir', fileURLToPath(new URL('../', import.meta.url)));
const ONLY = opt('only', ALL.join(',')).split(',');
const LABEL = opt('label', DIR);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Start the server; resolves with its port, pid and a stop(). */
async function startServer(env = {}) {
  const child = spawn(process.execPath, [`${DIR}/dist/server/main.js`], {
    env: { ...process.env, TIDINGS_PORT: '0', TIDINGS_HOST: '127.0.0.1', TIDINGS_SUBSCRIBER_SECRET: BENCH_SECRET, TIDINGS_PUBLISHER_KEY: BENCH_PUBLISHER_KEY, TIDINGS_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error('server did not start')), 15_000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = /listening on http:\/\/[^:]+:(\d+)/.exec(out);
      if (m) { clearTimeout(t); resolve(Number(m[1])); }
    });
    child.once('exit', (code) => reject(new Error(`server exited ${code}`)));
  });
  child.stdout.resume();
  return {
    port, pid: child.pid,
    stop: () => new Promise((r) => { if (child.exitCode !== null || child.signalCode !== null) return r(); child.once('exit', r); child.kill('SIGKILL'); }),
  };
}

/** CPU seconds (user + system) the process used so far. */
function cpuSeconds(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (100/s)
}
function rssBytes(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]) * 1024;
}
function openFds(pid) {
  try { return readFileSync(`/proc/${pid}/net/tcp`, 'utf8').split('\n').length; } catch { return -1; }
}

function connectFrom(port, from) {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress: from });
    s.on('error', () => resolve(s));
    s.once('connect', () => resolve(s));
  });
}

/** A real client's upgrade from `from`: the answer's status (0: closed without one). */
function upgradeStatus(port, from) {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress: from });
    let got = '';
    const done = (st) => { s.destroy(); resolve(st); };
    const t = setTimeout(() => done(0), 5000);
    s.on('error', () => { clearTimeout(t); done(0); });
    s.on('close', () => { clearTimeout(t); done(Number(got.slice(9, 12)) || 0); });
    s.on('data', (d) => { got += d.toString('latin1'); if (got.includes('\r\n\r\n')) { clearTimeout(t); done(Number(got.slice(9, 12))); } });
    s.once('connect', () => s.write(upgradeRequest('127.0.0.1', port)));
  });
}

/** Subscribe over a raw socket; onEvent gets each text message (parsed), after welcome. */
async function rawSubscriber(port, token, channels, from, onMessage = null) {
  const s = net.connect({ port, host: '127.0.0.1', localAddress: from });
  s.on('error', () => {});
  await new Promise((r) => s.once('connect', r));
  s.write(Buffer.concat([Buffer.from(upgradeRequest('127.0.0.1', port), 'latin1'), helloFrame(token, channels)]));
  let headDone = false;
  let left = null;
  let welcomed;
  const welcome = new Promise((r) => { welcomed = r; });
  s.on('data', (chunk) => {
    if (!headDone) {
      const i = chunk.indexOf('\r\n\r\n');
      if (i < 0) return;
      headDone = true;
      chunk = chunk.subarray(i + 4);
    }
    left = parseFrames(left, chunk, (op, buf, start, end) => {
      if (op !== 1) return;
      const text = buf.toString('utf8', start, end);
      if (text.startsWith('{"type":"welcome"')) welcomed();
      else if (onMessage) onMessage(JSON.parse(text));
    });
  });
  await Promise.race([welcome, sleep(10_000)]);
  return s;
}

/** The sampling subscriber (a worker: CommonJS source). Posts {n, lag} per event. */
const SAMPLER = `
const net = require('node:net');
const { parentPort, workerData } = require('node:worker_threads');
const s = net.connect(workerData.port, '127.0.0.1');
s.on('error', () => {});
s.once('connect', () => s.write(Buffer.from(workerData.head)));
let buf = Buffer.alloc(0), head = false;
s.on('data', (d) => {
  buf = Buffer.concat([buf, d]);
  if (!head) { const i = buf.indexOf('\\r\\n\\r\\n'); if (i < 0) return; head = true; buf = buf.subarray(i + 4); }
  for (;;) {
    if (buf.length < 2) break;
    let len = buf[1] & 0x7f, at = 2;
    if (len === 126) { if (buf.length < 4) break; len = buf.readUInt16BE(2); at = 4; }
    else if (len === 127) { if (buf.length < 10) break; len = buf.readUInt32BE(6); at = 10; }
    if (buf.length < at + len) break;
    const text = buf.toString('utf8', at, at + len);
    buf = buf.subarray(at + len);
    if (text.startsWith('{"type":"event"')) { const m = JSON.parse(text); parentPort.postMessage({ n: m.data.n, lag: Date.now() - m.data.t }); }
  }
});
`;

const results = [];
const report = (name, r) => { const row = { attack: name, label: LABEL, ...r }; results.push(row); console.log(JSON.stringify(row)); };

// ---------------------------------------------------------------------------

async function connectFlood() {
  const srv = await startServer();
  const flood = [];
  let stop = false;
  // 500 empty connects/s from 20 addresses for 6 s (3,000 sockets), held open.
  const flooder = (async () => {
    for (let t = 0; t < 60 && !stop; t++) {
      for (let i = 0; i < 50; i++) flood.push(connectFrom(srv.port, `127.0.0.${2 + ((t * 50 + i) % 20)}`));
      await sleep(100);
    }
  })();
  await sleep(2500);
  const statuses = [];
  for (let i = 0; i < 30; i++) { statuses.push(await upgradeStatus(srv.port, '127.0.0.50')); await sleep(100); }
  stop = true;
  await flooder;
  for (const s of await Promise.all(flood)) s.destroy();
  await srv.stop();
  report('connect', { legitimate: statuses.length, upgraded: statuses.filter((x) => x === 101).length, statuses: [...new Set(statuses)] });
}

async function publishFlood() {
  const srv = await startServer();
  const token = await signToken('flood', ['flood']);
  const subs = [];
  for (let i = 0; i < 1000; i += 50) {
    subs.push(...(await Promise.all(Array.from({ length: 50 }, (_, k) => rawSubscriber(srv.port, token, { flood: null }, `127.0.0.${2 + ((i + k) % 20)}`)))));
  }
  // The sampled subscriber reads on its own thread: the lag it sees is the
  // server's, not this thread's, busy with the 1,000 other sockets.
  let maxLagMs = 0;
  let lastSeenN = -1;
  let lastSeenAt = 0;
  const sampler = new Worker(SAMPLER, {
    eval: true,
    workerData: { port: srv.port, head: Buffer.concat([Buffer.from(upgradeRequest('127.0.0.1', srv.port), 'latin1'), helloFrame(token, { flood: null })]) },
  });
  sampler.on('message', (m) => {
    maxLagMs = Math.max(maxLagMs, m.lag);
    lastSeenN = m.n;
    lastSeenAt = Date.now();
  });
  await new Promise((r) => sampler.once('online', r));
  await sleep(500);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 20 });
  const statuses = {};
  let lastAccepted = -1;
  const publish = (n) => new Promise((resolve) => {
    const body = JSON.stringify({ channel: 'flood', data: { n, t: Date.now(), pad: 'x'.repeat(200) } });
    const req = http.request({ host: '127.0.0.1', port: srv.port, path: '/v1/publish', method: 'POST', agent, headers: { authorization: `Bearer ${BENCH_PUBLISHER_KEY}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume();
      res.on('end', () => { statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1; if (res.statusCode === 200) lastAccepted = Math.max(lastAccepted, n); resolve(); });
    });
    req.on('error', () => { statuses.error = (statuses.error ?? 0) + 1; resolve(); });
    req.end(body);
  });
  // The server's own view, once a second: fan-out lag and queue (tidings_fanout_* gauges; absent before issue 12).
  const series = [];
  const scrape = setInterval(() => {
    http.get({ host: '127.0.0.1', port: srv.port, path: '/metrics', agent: false }, (res) => {
      let t = ''; res.on('data', (d) => { t += d; });
      res.on('end', () => {
        const g = (name) => { const m = new RegExp(`^${name} (\\S+)`, 'm').exec(t); return m ? Number(m[1]) : null; };
        series.push([g('tidings_fanout_lag_seconds'), g('tidings_fanout_queue_jobs')]);
      });
    }).on('error', () => {});
  }, 1000);
  const cpuAtStart = cpuSeconds(srv.pid);
  // 200 publishes/s for 6 s.
  const inflight = [];
  const t0 = Date.now();
  for (let n = 0; n < 1200; n++) {
    inflight.push(publish(n));
    const due = t0 + (n + 1) * 5;
    if (due > Date.now()) await sleep(due - Date.now());
  }
  await Promise.all(inflight);
  const floodEnd = Date.now();
  const serverCpuDuringFloodS = Math.round((cpuSeconds(srv.pid) - cpuAtStart) * 100) / 100;
  const floodS = (floodEnd - t0) / 1000;
  const lagAtEnd = lastSeenAt > 0 ? maxLagMs : null;
  // Until the last accepted event reached the sampled subscriber (bounded: 90 s).
  while (lastSeenN < lastAccepted && Date.now() - floodEnd < 90_000) await sleep(50);
  const drainedAfterS = lastSeenN >= lastAccepted ? (Date.now() - floodEnd) / 1000 : null;
  clearInterval(scrape);
  for (const s of subs) s.destroy();
  await sampler.terminate();
  agent.destroy();
  await srv.stop();
  report('publish', { subscribers: 1001, publishes: 1200, ratePerS: 200, statuses, maxDeliveryLagMs: lagAtEnd === null ? null : maxLagMs, deliveredAllAcceptedAfterFloodS: drainedAfterS, serverLagSAndJobsEachSecond: series, floodS, serverCpuDuringFloodS });
}

async function slowloris() {
  const srv = await startServer();
  const socks = [];
  for (let i = 0; i < 3000; i += 100) {
    const batch = await Promise.all(Array.from({ length: 100 }, (_, k) => connectFrom(srv.port, `127.0.0.${2 + ((i + k) % 20)}`)));
    for (const s of batch) { s.resume(); s.write('GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n'); socks.push(s); }
  }
  const open = () => socks.filter((s) => !s.destroyed && s.readyState === 'open').length;
  const at0 = open();
  await sleep(12_000);
  const at12 = open();
  for (const s of socks) s.destroy();
  await srv.stop();
  report('slowloris', { sockets: 3000, openAtStart: at0, openAfter12s: at12 });
}

async function fragments() {
  const srv = await startServer();
  const s = net.connect(srv.port, '127.0.0.1');
  s.on('error', () => {});
  await new Promise((r) => s.once('connect', r));
  s.write(upgradeRequest('127.0.0.1', srv.port));
  await new Promise((r) => s.once('data', r));
  const first = maskedFrame(0x1, Buffer.alloc(0)); first[0] = 0x01; // text, FIN=0
  const empty = maskedFrame(0x0, Buffer.alloc(0)); empty[0] = 0x00; // continuation, FIN=0
  const burst = Buffer.concat(Array.from({ length: 10_000 }, () => empty));
  let closed = false;
  let closedAt = 0;
  s.on('close', () => { closed = true; closedAt = Date.now(); });
  const cpu0 = cpuSeconds(srv.pid);
  s.write(first);
  let frames = 1;
  const t0 = Date.now();
  while (!closed && Date.now() - t0 < 5000) {
    if (s.write(burst)) await new Promise((r) => setImmediate(r));
    else await Promise.race([new Promise((r) => s.once('drain', r)), sleep(200)]);
    frames += 10_000;
  }
  await sleep(300);
  const cpu = cpuSeconds(srv.pid) - cpu0;
  s.destroy();
  await srv.stop();
  report('fragments', { framesWritten: frames, closedByServerAfterS: closed ? (closedAt - t0) / 1000 : null, serverCpuS: Math.round(cpu * 100) / 100 });
}

async function replay() {
  const srv = await startServer({ TIDINGS_HELLO_TIMEOUT_MS: '30000' });
  const agent = new http.Agent({ keepAlive: true });
  const post = (body) => new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port: srv.port, path: '/v1/publish', method: 'POST', agent, headers: { authorization: `Bearer ${BENCH_PUBLISHER_KEY}`, 'content-type': 'application/json' } }, (res) => {
      let t = ''; res.on('data', (d) => { t += d; }); res.on('end', () => resolve(JSON.parse(t)));
    });
    req.end(JSON.stringify(body));
  });
  const first = (await post({ channel: 'big', data: 0 })).cursor;
  const blob = 'z'.repeat(60_000);
  for (let i = 0; i < 10; i++) await post({ events: Array.from({ length: 100 }, () => ({ channel: 'big', data: blob })) });
  await sleep(500);
  const rss0 = rssBytes(srv.pid);
  const token = await signToken('r', ['big']);
  const socks = [];
  for (let i = 0; i < 20; i++) {
    const s = net.connect({ port: srv.port, host: '127.0.0.1', localAddress: `127.0.0.${2 + i}` });
    s.on('error', () => {});
    await new Promise((r) => s.once('connect', r));
    s.write(Buffer.concat([Buffer.from(upgradeRequest('127.0.0.1', srv.port), 'latin1'), helloFrame(token, { big: first })]));
    s.pause(); // never reads
    socks.push(s);
  }
  await sleep(3000);
  const rss1 = rssBytes(srv.pid);
  for (const s of socks) s.destroy();
  agent.destroy();
  await srv.stop();
  report('replay', { stalledClients: 20, historyMB: 60, serverRssGrowthMB: Math.round((rss1 - rss0) / 1e5) / 10 });
}

async function backlog() {
  const srv = await startServer();
  // 5,000 connects at once from 10 addresses, while the server is busy (a 300 ms busy loop via nothing: just the burst).
  const outcomes = { connected: 0, reset: 0, other: 0 };
  await Promise.all(Array.from({ length: 5000 }, (_, i) => new Promise((resolve) => {
    const s = net.connect({ port: srv.port, host: '127.0.0.1', localAddress: `127.0.0.${2 + (i % 10)}` });
    s.once('connect', () => { outcomes.connected++; s.write(`GET /livez HTTP/1.1\r\nHost: x\r\n\r\n`); });
    s.once('data', () => { s.destroy(); resolve(); });
    s.once('error', (e) => { if (e.code === 'ECONNRESET' || e.code === 'ECONNREFUSED') outcomes.reset++; else outcomes.other++; resolve(); });
    s.once('close', () => resolve());
    setTimeout(() => { s.destroy(); resolve(); }, 10_000);
  })));
  await srv.stop();
  report('backlog', { burst: 5000, ...outcomes });
}

const RUN = { connect: connectFlood, publish: publishFlood, slowloris, fragments, replay, backlog };
for (const name of ONLY) await RUN[name]();
void openFds;
