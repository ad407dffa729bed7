// Benchmark 5: reconnect storm. N real clients connected (the Tidings SDK in
// Node processes, WebSocket only and with the default transport 'auto', then
// reconnecting-websocket with default options); the
// server drains (SIGTERM: every socket closed 1012 with the window in ms) and
// a new server process starts on the same port. Measures reconnections
// (welcome received) per 100 ms, the peak against the uniform rate over the
// window, the time until all are back, and that nobody lost an event: events
// are published during and after the storm, and every client must have all
// of them, or a `reset` and every event after it.
import { spawn, fork } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { interleaved, target } from './lib/bench.mjs';
import { nowMs } from './lib/stats.mjs';
import { BENCH_SECRET, BENCH_PUBLISHER_KEY } from './lib/token.mjs';

export const name = 'storm';
export const defaultServers = ['sdk', 'sdk-auto', 'rws'];
const ROOT = fileURLToPath(new URL('../', import.meta.url));
const CLIENT = fileURLToPath(new URL('./lib/storm-client.mjs', import.meta.url));

export function params(quick) {
  return quick
    ? { clients: 400, processes: 2, channels: 20, windowMs: 2_000, rampMs: 1_000, runs: 1 }
    : { clients: 10_000, processes: 4, channels: 100, windowMs: 10_000, rampMs: 10_000, runs: 3 };
}

/** The SDK as shipped (dist/tidings.mjs), or bundled from src/ when dist is missing. */
async function sdkPath() {
  const dist = `${ROOT}dist/tidings.mjs`;
  if (existsSync(dist)) return dist;
  const out = `${ROOT}bench/out/tidings.bench.mjs`;
  await build({ entryPoints: [`${ROOT}src/index.ts`], bundle: true, format: 'esm', platform: 'neutral', outfile: out, logLevel: 'silent' });
  return out;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
    s.on('error', reject);
  });
}

/** main.js in its own process; resolves once it printed "listening on". */
function startMain(port, windowMs) {
  const args = existsSync(`${ROOT}dist/server/main.js`) ? [`${ROOT}dist/server/main.js`] : ['--import', 'tsx', `${ROOT}server/main.ts`];
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, TIDINGS_PORT: String(port), TIDINGS_HOST: '127.0.0.1', TIDINGS_SUBSCRIBER_SECRET: BENCH_SECRET, TIDINGS_PUBLISHER_KEY: BENCH_PUBLISHER_KEY, TIDINGS_DRAIN_WINDOW_MS: String(windowMs), TIDINGS_DRAIN_LISTEN_MS: '0', TIDINGS_LOG_LEVEL: 'warn' },
  });
  const exited = new Promise((r) => child.once('exit', (code) => r(code)));
  return new Promise((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`server did not listen: ${out}`)); }, 20_000);
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes('listening on')) { clearTimeout(t); resolve({ child, exited }); }
    });
    exited.then((code) => { clearTimeout(t); reject(new Error(`server exited ${code}: ${out}`)); });
  });
}

/** Start a server on `port`, retrying while the old process still holds the listener. */
async function startMainRetrying(port, windowMs) {
  for (let attempt = 0; ; attempt++) {
    try { return await startMain(port, windowMs); }
    catch (err) { if (attempt >= 50 || !/EADDRINUSE/.test(String(err.message))) throw err; await sleep(100); }
  }
}

function publishBatch(port, events) {
  const body = JSON.stringify({ events });
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/v1/publish', method: 'POST', headers: { authorization: `Bearer ${BENCH_PUBLISHER_KEY}`, 'content-type': 'application/json' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', () => resolve(0));
    req.end(body);
  });
}

function spawnClients(n) {
  return Array.from({ length: n }, () => {
    const child = fork(CLIENT, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const waiters = new Map();
    child.on('message', (m) => { const w = waiters.get(m.ev); if (w) { waiters.delete(m.ev); w(m); } });
    const exited = new Promise((r) => child.once('exit', r));
    const wait = (ev, ms) => new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`storm client: no ${ev} in ${ms} ms`)), ms);
      waiters.set(ev, (m) => { clearTimeout(t); resolve(m); });
    });
    return {
      ready: wait('ready', 10_000),
      ask(msg, ev, ms = 30_000) { const p = wait(ev, ms); child.send(msg); return p; },
      async stop() { try { child.send({ cmd: 'exit' }); } catch {} const t = setTimeout(() => child.kill('SIGKILL'), 3000); await exited; clearTimeout(t); },
    };
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function once(mode, p, log) {
  const port = await freePort();
  let server = await startMain(port, p.windowMs);
  const procs = spawnClients(p.processes);
  const sdk = await sdkPath();
  try {
    await Promise.all(procs.map((c) => c.ready));
    const per = Math.ceil(p.clients / p.processes);
    const started = await Promise.all(procs.map((c, k) => c.ask({ cmd: 'start', mode, url: `http://127.0.0.1:${port}`, sdkPath: sdk, count: Math.min(per, p.clients - k * per), startIndex: k * per, channels: p.channels, rampMs: p.rampMs, timeoutMs: 30_000 }, 'started', p.rampMs + 60_000)));
    const open = started.reduce((a, s) => a + s.open, 0);
    log(`  ${mode}: ${open}/${p.clients} connected`);
    const rooms = Array.from({ length: p.channels }, (_, i) => `room:${i}`);
    await publishBatches(port, rooms, { phase: 'pre', seq: 0 });
    await sleep(1500);

    // The restart.
    const t0 = nowMs();
    await Promise.all(procs.map((c) => c.ask({ cmd: 'restart', at: t0 }, 'marked')));
    // A restart as a process manager does it: the old process drains (it closes its
    // listener at once, then its sockets), the new one starts on the same port
    // without waiting for the old one to exit.
    const old = server;
    old.child.kill('SIGTERM');
    server = await startMainRetrying(port, p.windowMs);
    const upAt = nowMs();
    const code = await Promise.race([old.exited, sleep(30_000).then(() => 'timeout')]);
    if (code === 'timeout') old.child.kill('SIGKILL');
    const downMs = nowMs() - t0; // until the old process has exited
    const upMs = upAt - t0;

    // Events during the storm: once a second to ONE channel (rotating), so the
    // check covers live delivery and resume/reset mid-storm while the fan-out
    // stays small (a publish to every channel would stall 2 shared cores for
    // ~100 ms and show up as a fake reconnect peak). Then, once everybody is
    // back, a final event on every channel that every client must get.
    const sent = Object.fromEntries(rooms.map((r) => [r, 0]));
    const post = async (channels) => publishEach(port, channels.map((channel) => ({ channel, data: { phase: 'post', seq: ++sent[channel] } })));
    const deadline = t0 + p.windowMs + 20_000;
    for (let k = 0; ; k++) {
      await post([rooms[k % rooms.length]]);
      const st = await Promise.all(procs.map((c) => c.ask({ cmd: 'status' }, 'status')));
      if (st.reduce((a, s) => a + s.open, 0) >= open || nowMs() > deadline) break;
      await sleep(1000);
    }
    await sleep(500);
    await post(rooms);
    await sleep(2000);
    const reports = await Promise.all(procs.map((c) => c.ask({ cmd: 'report', events: sent }, 'report')));
    const rows = reports.flatMap((r) => r.rows);
    return summarize(rows, t0, p, { open, downMs, upMs, events: Object.values(sent).reduce((a, b) => a + b, 0) });
  } finally {
    await Promise.all(procs.map((c) => c.stop()));
    server.child.kill('SIGKILL');
    await server.exited;
  }
}

async function publishBatches(port, rooms, data) {
  await publishEach(port, rooms.map((channel) => ({ channel, data })));
}

/** Publish events (batches of at most 100, PROTOCOL.md batch form). */
async function publishEach(port, events) {
  for (let i = 0; i < events.length; i += 100) {
    const status = await publishBatch(port, events.slice(i, i + 100));
    if (status !== 200) throw new Error(`publish batch answered ${status}`);
  }
}

export function summarize(rows, t0, p, extra) {
  const backs = rows.map((r) => (r.back === null ? null : r.back - t0));
  const binMs = 100;
  const bins = [];
  for (const b of backs) if (b !== null) { const k = Math.floor(b / binMs); bins[k] = (bins[k] ?? 0) + 1; }
  for (let k = 0; k < bins.length; k++) bins[k] ??= 0;
  const uniform = extra.open / (p.windowMs / binMs);
  const peak = Math.max(0, ...bins);
  const notBack = backs.filter((b) => b === null).length;
  const closes = {};
  for (const r of rows) for (const [c, n] of Object.entries(r.closes ?? {})) closes[c] = (closes[c] ?? 0) + n;
  return {
    clients: rows.length,
    connected: extra.open,
    oldExitedMs: extra.downMs,
    newListeningMs: extra.upMs,
    peakPer100ms: peak,
    uniformPer100ms: uniform,
    peakRatio: peak / uniform,
    allBackMs: notBack ? NaN : Math.max(...backs),
    notBack,
    lost: rows.filter((r) => !r.ok).length,
    resets: rows.filter((r) => r.resets > 0).length,
    eventsPublished: extra.events,
    // Where each client ended (transport 'auto' may fall back), and how many went through polling at all.
    onWebSocket: rows.filter((r) => r.transport === 'websocket').length,
    onPolling: rows.filter((r) => r.transport === 'polling').length,
    wentPolling: rows.filter((r) => r.polled).length,
    bins,
    closes,
  };
}

export async function run({ quick = false, servers = defaultServers, log = console.error, overrides = {} } = {}) {
  const p = { ...params(quick), ...overrides };
  const res = await interleaved(servers, p.runs, (mode) => once(mode, p, log), (s) => log(s.length > 400 ? s.slice(0, 400) + '…' : s));
  const t = res.median.sdk;
  const targets = [];
  if (t) {
    targets.push(target('peak reconnects per 100 ms / uniform rate over the window', t.peakRatio, '<=', 2));
    targets.push(target('all back after the drain (ms)', t.allBackMs, '<=', p.windowMs + 5000));
    targets.push(target('clients that lost an event (neither resumed nor reset)', t.lost, '<=', 0));
  }
  return { name, params: p, ...res, targets };
}
