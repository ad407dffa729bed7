// Benchmark 3a, run in its own process (see upgrade.mjs for the flags):
// our upgrade path (parseUpgrade + acceptResponse: parse, accept key, 101
// bytes) against http.Server + ws.handleUpgrade fed the same request bytes.
//
// Time: ns/op, median of several timed batches after a warm-up.
// Allocation: bytes per op = growth of heapUsed + arrayBuffers over a batch
// run with a young generation so large (--min/max-semi-space-size) that no
// GC can happen during it; a PerformanceObserver on 'gc' entries proves it,
// and a batch that saw a GC is thrown away and retried smaller. Native
// allocations outside V8 (OpenSSL's SHA-1 state) are not counted on either
// side; both sides compute the same SHA-1 through node:crypto.
import http from 'node:http';
import { Duplex } from 'node:stream';
import { PerformanceObserver } from 'node:perf_hooks';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { WebSocketServer } from 'ws';
import { upgradeRequest } from './lib/wire.mjs';
import { median } from './lib/stats.mjs';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const quick = process.argv.includes('--quick');
const REQ = upgradeRequest('127.0.0.1', 8080);

// Ours, from dist/ when built, else the TypeScript source (this process then runs under tsx).
const ours = existsSync(`${ROOT}dist/server/ws/upgrade.js`) ? await import(`${ROOT}dist/server/ws/upgrade.js`) : await import(`${ROOT}server/ws/upgrade.ts`);

/** A socket stand-in for http.Server and ws: a stream.Duplex (ws calls stream methods
 *  on it) with the net.Socket methods they use. Feeding bytes with emit('data') runs the
 *  HTTP parser synchronously, so one op is: connection -> parse -> 'upgrade' ->
 *  handleUpgrade -> 101 written. No syscalls, which favours ws (a real socket would add
 *  them to its side only). Creating it is measured separately and subtracted. */
class FakeSocket extends Duplex {
  out = null;
  _read() {}
  _write(chunk, _enc, cb) { this.out = chunk; cb(); }
  setTimeout() { return this; }
  setNoDelay() { return this; }
  setKeepAlive() { return this; }
}

const server = http.createServer();
// clientTracking off: the op measures one upgrade, not a Set that grows with every op.
const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, clientTracking: false, handleProtocols: (p) => (p.has('tidings.v1') ? 'tidings.v1' : false) });
let sink = null;
server.on('upgrade', (req, socket, head) => wss.handleUpgrade(req, socket, head, (ws) => { sink = ws; }));

const ops = {
  tidings() {
    const r = ours.parseUpgrade(REQ, 8192);
    if (r.kind !== 'upgrade') throw new Error(`parseUpgrade: ${r.kind}`);
    sink = ours.acceptResponse(r.key, r.protocol);
  },
  ws() {
    const s = new FakeSocket();
    server.emit('connection', s);
    s.emit('data', REQ);
    if (!s.out) throw new Error('ws wrote no 101');
    sink = s.out;
  },
  /** What the fake socket itself costs; subtracted from the ws side. */
  fakeSocket() { sink = new FakeSocket(); },
};

let gcs = 0;
new PerformanceObserver((list) => { gcs += list.getEntries().length; }).observe({ entryTypes: ['gc'] });

function timeOp(fn, n) {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) fn();
  return Number(process.hrtime.bigint() - t0) / n;
}

async function bytesPerOp(fn, n) {
  for (let attempt = 0; attempt < 6; attempt++, n = Math.max(100, n >> 1)) {
    global.gc(); global.gc();
    await new Promise((r) => setTimeout(r, 50)); // let the observer report the forced GCs
    const before = gcs;
    const m0 = process.memoryUsage();
    for (let i = 0; i < n; i++) fn();
    const m1 = process.memoryUsage();
    await new Promise((r) => setTimeout(r, 50));
    if (gcs === before) return (m1.heapUsed - m0.heapUsed + m1.arrayBuffers - m0.arrayBuffers) / n;
  }
  return NaN;
}

const result = {};
const N = quick ? 2_000 : 20_000;
const BATCHES = quick ? 3 : 9;
for (const name of Object.keys(ops)) {
  const fn = ops[name];
  for (let i = 0; i < N; i++) fn(); // warm-up: let the JIT settle
  const times = [];
  for (let b = 0; b < BATCHES; b++) times.push(timeOp(fn, N));
  const bytes = [];
  for (let b = 0; b < 3; b++) bytes.push(await bytesPerOp(fn, quick ? 1_000 : 5_000));
  result[name] = { nsPerOp: median(times), bytesPerOp: median(bytes) };
}
result.wsNet = { nsPerOp: result.ws.nsPerOp - result.fakeSocket.nsPerOp, bytesPerOp: result.ws.bytesPerOp - result.fakeSocket.bytesPerOp };
void sink;
process.stdout.write(JSON.stringify(result) + '\n');
