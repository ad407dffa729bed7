// Benchmark 4: polling. autocannon on GET /v1/poll with a matching
// If-None-Match (every answer a 304) against a bare node:http handler that
// answers 304, plus the bytes of one 304 on the wire.
import net from 'node:net';
import autocannon from 'autocannon';
import { startServer, cpuMicros } from './lib/servers.mjs';
import { interleaved, target } from './lib/bench.mjs';
import { signToken } from './lib/token.mjs';
import { headEnd } from './lib/wire.mjs';

export const name = 'poll';
export const defaultServers = ['tidings', 'http304'];
const PATH = '/v1/poll?channels=bench';

export function params(quick) {
  return quick ? { connections: 16, seconds: 2, runs: 1 } : { connections: 32, seconds: 10, runs: 3 };
}

/** One raw request; resolves with the response head (no body is read: 304 has none). */
export function rawRequest(port, headers) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    const t = setTimeout(() => { s.destroy(); reject(new Error('raw request timed out')); }, 5000);
    s.on('connect', () => s.write(`GET ${PATH} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`));
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      const end = headEnd(buf);
      if (end < 0) return;
      clearTimeout(t);
      s.destroy();
      const head = buf.toString('latin1', 0, end);
      const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
      resolve({ head, status: Number(head.slice(9, 12)), bytes: end + (length ? Number(length[1]) : 0), received: buf });
    });
    s.on('error', reject);
  });
}

async function headersFor(kind, port) {
  if (kind !== 'tidings') return { 'if-none-match': '"bench=x-0"' };
  const authorization = `Bearer ${await signToken('poller', ['bench'], 3600)}`;
  const first = await rawRequest(port, { authorization });
  const etag = /\r\netag:\s*([^\r\n]+)/i.exec(first.head)?.[1];
  if (first.status !== 200 || !etag) throw new Error(`poll without validator: ${first.head.split('\r\n')[0]}`);
  return { authorization, 'if-none-match': etag.trim() };
}

export async function run({ quick = false, servers = defaultServers, log = console.error, overrides = {} } = {}) {
  const p = { ...params(quick), ...overrides };
  const wire = {};
  const res = await interleaved(servers, p.runs, async (kind) => {
    const srv = await startServer(kind);
    try {
      const headers = await headersFor(kind, srv.port);
      const one = await rawRequest(srv.port, headers);
      if (one.status !== 304) throw new Error(`${kind}: expected 304, got ${one.head.split('\r\n')[0]}`);
      wire[kind] = { bytes: one.bytes, head: one.head };
      const c0 = await srv.cpu();
      const r = await autocannon({ url: `http://127.0.0.1:${srv.port}${PATH}`, connections: p.connections, duration: p.seconds, headers });
      const c1 = await srv.cpu();
      return {
        notModifiedPerSec: r['3xx'] / (r.duration || p.seconds),
        other: r['1xx'] + r['2xx'] + r['4xx'] + r['5xx'] + r.errors + r.timeouts,
        latencyP50Ms: r.latency.p50,
        latencyP99Ms: r.latency.p99,
        cpuPerRequestUs: (cpuMicros(c1) - cpuMicros(c0)) / Math.max(1, r['3xx']),
        bytesPer304: one.bytes,
      };
    } finally {
      await srv.stop();
    }
  }, log);
  const t = res.median.tidings, b = res.median.http304;
  const targets = [];
  if (t && b) targets.push(target('304/s vs bare node:http (ratio)', t.notModifiedPerSec / b.notModifiedPerSec, '>=', 0.9));
  if (t) targets.push(target('bytes per 304 on the wire', t.bytesPer304, '<=', 250));
  return { name, params: p, ...res, wire, targets };
}
