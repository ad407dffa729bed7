// Benchmark 1: idle subscribers. N connections that completed hello/welcome on
// one channel each (user:<i>), held idle; server heap and RSS per connection
// after GC, and the marginal cost between the first step and N.
import { startServer } from './lib/servers.mjs';
import { startLoaders } from './lib/loaders.mjs';
import { interleaved, target } from './lib/bench.mjs';

export const name = 'idle';
export const defaultServers = ['tidings', 'ws', 'net'];

export function params(quick) {
  return quick ? { total: 600, step: 200, warmup: 100, loaders: 2, runs: 1 } : { total: 15_000, step: 5_000, warmup: 500, loaders: 4, runs: 3 };
}

export async function run({ quick = false, servers = defaultServers, log = console.error, overrides = {} } = {}) {
  const p = { ...params(quick), ...overrides };
  const res = await interleaved(servers, p.runs, async (kind) => {
    const srv = await startServer(kind);
    const loaders = await startLoaders(p.loaders);
    try {
      // Warm-up: JIT, token verification and the first channels, then gone, so
      // the baseline measurement is of a server that has already served clients.
      await loaders.connect(p.warmup, { port: srv.port, channelMode: 'per', startIndex: 1_000_000 });
      await loaders.closeAll();
      await new Promise((r) => setTimeout(r, 500));
      const m0 = await srv.measure();
      const a = await loaders.connect(p.step, { port: srv.port, channelMode: 'per', startIndex: 0 });
      const m1 = await srv.measure();
      const b = await loaders.connect(p.total - p.step, { port: srv.port, channelMode: 'per', startIndex: p.step });
      const m2 = await srv.measure();
      const n = a.ok + b.ok;
      if (a.failed + b.failed > 0) log(`  ${kind}: ${a.failed + b.failed} connections failed: ${JSON.stringify({ ...a.why, ...b.why })}`);
      return {
        connected: n,
        failed: a.failed + b.failed,
        serverConnections: m2.connections,
        heapPerConn: (m2.heap - m0.heap) / n,
        rssPerConn: (m2.rss - m0.rss) / n,
        externalPerConn: (m2.external - m0.external) / n,
        marginalHeap: (m2.heap - m1.heap) / (b.ok || NaN),
        marginalRss: (m2.rss - m1.rss) / (b.ok || NaN),
        baseHeapMiB: m0.heap / 2 ** 20,
        baseRssMiB: m0.rss / 2 ** 20,
        connectMs: a.ms + b.ms,
      };
    } finally {
      await loaders.stop();
      await srv.stop();
    }
  }, log);
  const t = res.median.tidings, w = res.median.ws, n = res.median.net;
  const targets = [];
  if (t && w) targets.push(target('heap per subscriber vs ws (ratio)', t.heapPerConn / w.heapPerConn, '<=', 0.5));
  if (t && n) targets.push(target('RSS per subscriber vs bare net (ratio)', t.rssPerConn / n.rssPerConn, '<=', 1.1));
  return { name, params: p, ...res, targets };
}
