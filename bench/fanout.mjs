// Benchmark 2: fan-out. N subscribers on one channel; K publishes of a
// 100-byte event through POST /v1/publish, each sent as soon as the previous
// one is answered. Measures the time until the last subscriber has each
// event, deliveries/s, server CPU per delivery, publish response times while
// broadcasts are in flight, and the server's event-loop delay.
import http from 'node:http';
import { startServer, cpuMicros } from './lib/servers.mjs';
import { startLoaders } from './lib/loaders.mjs';
import { interleaved, target } from './lib/bench.mjs';
import { median, percentile, nowMs } from './lib/stats.mjs';
import { BENCH_PUBLISHER_KEY } from './lib/token.mjs';

export const name = 'fanout';
export const defaultServers = ['tidings', 'ws', 'net'];

export function params(quick) {
  return quick ? { subscribers: 500, events: 5, loaders: 2, runs: 1 } : { subscribers: 15_000, events: 20, loaders: 4, runs: 3 };
}

/** `data` whose JSON is exactly 100 bytes: {"seq":N,"pad":"xxx…"}. */
export function eventData(seq, bytes = 100) {
  const base = JSON.stringify({ seq, pad: '' }).length;
  return JSON.stringify({ seq, pad: 'x'.repeat(bytes - base) });
}

/**
 * What the loaders' outcome says about a burst of events sent at `sent[k]`:
 * deliveries over the time from the first publish to the last subscriber
 * having the last event, and per event the time until its last subscriber had it.
 */
export function deliverySummary(got, sent) {
  const events = sent.length;
  const delivered = got.live * events - got.missing.reduce((a, b) => a + b, 0);
  const last = got.times[events - 1];
  const totalMs = last === null ? NaN : last - sent[0];
  return {
    subscribers: got.live,
    delivered,
    missing: got.live * events - delivered,
    totalMs,
    deliveriesPerSec: delivered / (totalMs / 1000),
    toLastMs: got.times.map((t, i) => (t === null ? NaN : t - sent[i])),
  };
}

export function publish(port, channel, dataJson, agent) {
  const body = `{"channel":${JSON.stringify(channel)},"data":${dataJson}}`;
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path: '/v1/publish', method: 'POST', agent, headers: { authorization: `Bearer ${BENCH_PUBLISHER_KEY}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
      (res) => {
        const parts = [];
        res.on('data', (d) => parts.push(d));
        res.on('end', () => (res.statusCode === 200 ? resolve(Buffer.concat(parts).toString()) : reject(new Error(`publish: ${res.statusCode} ${Buffer.concat(parts)}`))));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

export async function run({ quick = false, servers = defaultServers, log = console.error, overrides = {} } = {}) {
  const p = { ...params(quick), ...overrides };
  const res = await interleaved(servers, p.runs, async (kind) => {
    const srv = await startServer(kind);
    const loaders = await startLoaders(p.loaders);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const c = await loaders.connect(p.subscribers, { port: srv.port, channelMode: 'one', channel: 'bench' });
      if (c.failed) log(`  ${kind}: ${c.failed} subscribers failed: ${JSON.stringify(c.why)}`);
      // Warm the publish path (and the agent's socket) with one event nobody times.
      await publish(srv.port, 'warmup', eventData(0), agent);
      await new Promise((r) => setTimeout(r, 300));
      const outcome = await loaders.expect(p.events, 60_000);
      const cpu0 = await srv.cpu();
      await srv.lagStart();
      const sent = [], answered = [];
      for (let k = 1; k <= p.events; k++) {
        sent.push(nowMs());
        await publish(srv.port, 'bench', eventData(k), agent);
        answered.push(nowMs());
      }
      const got = await outcome.done;
      const lag = await srv.lagStop();
      const cpu1 = await srv.cpu();
      const publishMs = answered.map((t, i) => t - sent[i]);
      const d = deliverySummary(got, sent);
      return {
        subscribers: d.subscribers,
        delivered: d.delivered,
        missing: d.missing,
        totalMs: d.totalMs,
        deliveriesPerSec: d.deliveriesPerSec,
        eventLatencyP50Ms: median(d.toLastMs),
        publishP50Ms: median(publishMs),
        publishP99Ms: percentile(publishMs, 99),
        lagP50Ms: lag.p50,
        lagP99Ms: lag.p99,
        lagMaxMs: lag.max,
        cpuPerDeliveryUs: (cpuMicros(cpu1) - cpuMicros(cpu0)) / d.delivered,
      };
    } finally {
      agent.destroy();
      await loaders.stop();
      await srv.stop();
    }
  }, log);
  const t = res.median.tidings, w = res.median.ws;
  const targets = [];
  if (t && w) targets.push(target('deliveries/s vs ws (ratio)', t.deliveriesPerSec / w.deliveriesPerSec, '>=', 1.25));
  targets.push({ what: 'deliveries/s vs uWebSockets.js (ratio)', value: null, op: '>=', limit: 0.9, pass: null, note: 'uWebSockets.js is measured against Tidings in bench/anchors.mjs (server CPU per delivery, same run), not in this benchmark.' });
  if (t) targets.push(target('publish response p50 during broadcast (ms)', t.publishP50Ms, '<=', 10));
  if (t) targets.push(target('event-loop delay p99 during fan-out (ms)', t.lagP99Ms, '<=', 50));
  return { name, params: p, ...res, targets };
}
