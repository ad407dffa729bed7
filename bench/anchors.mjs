// Benchmark 8 (issue 14): Tidings against the fastest servers a user could
// pick instead, in the same run, each measured from outside as an operator
// sees it (/proc: RSS without forced GC, CPU time of the whole process):
//   - Tidings, fan-out batching on (default) and off (TIDINGS_FANOUT_BATCH=1)
//   - ws 8 on http.Server (Node 24)
//   - Bun.serve (uWebSockets inside; the `bun` devDependency)
//   - uWebSockets.js v20 (the `uwebsockets` devDependency, on a Node 20 binary)
// Idle: N subscribers on a channel each (user:<i>), RSS per subscriber over the
// server's own baseline. Fan-out: N subscribers on one channel, K publishes
// sent back to back (each once the previous was answered), server CPU per
// delivery. A server whose runtime is missing is reported as not run.
import http from 'node:http';
import { startLoaders } from './lib/loaders.mjs';
import { interleaved } from './lib/bench.mjs';
import { nowMs } from './lib/stats.mjs';
import { BENCH_SECRET, BENCH_PUBLISHER_KEY } from './lib/token.mjs';
import { findBun, findNode20, startProcess, tidingsMain } from './lib/procs.mjs';
import { deliverySummary, eventData, publish } from './fanout.mjs';

export const name = 'anchors';
export const defaultServers = ['tidings', 'tidings-nobatch', 'ws', 'bun', 'uws'];
export const LABELS = {
  tidings: 'Tidings (Node 24, batching on)',
  'tidings-nobatch': 'Tidings (Node 24, TIDINGS_FANOUT_BATCH=1)',
  ws: 'ws 8 on http.Server (Node 24)',
  bun: 'Bun.serve (uWebSockets inside)',
  uws: 'uWebSockets.js v20 (Node 20)',
};

export function params(quick) {
  // settleMs: pause after a phase so the server's memory and sockets settle before a reading.
  return quick ? { idle: 300, fanout: 300, events: 5, warmup: 50, loaders: 2, runs: 1, settleMs: 500 } : { idle: 15_000, fanout: 15_000, events: 20, warmup: 500, loaders: 4, runs: 1, settleMs: 1000 };
}

/** How to start each server; null when its runtime is not installed here. */
export function command(kind) {
  const tidingsEnv = { TIDINGS_PORT: '0', TIDINGS_SUBSCRIBER_SECRET: BENCH_SECRET, TIDINGS_PUBLISHER_KEY: BENCH_PUBLISHER_KEY, TIDINGS_LOG_LEVEL: 'warn' };
  switch (kind) {
    case 'tidings': return { cmd: process.execPath, args: tidingsMain(), env: tidingsEnv };
    case 'tidings-nobatch': return { cmd: process.execPath, args: tidingsMain(), env: { ...tidingsEnv, TIDINGS_FANOUT_BATCH: '1' } };
    case 'ws': return { cmd: process.execPath, args: ['bench/ref/serve.mjs', 'ws'], env: {} };
    case 'bun': { const bun = findBun(); return bun ? { cmd: bun, args: ['bench/ref/bun-server.mjs'], env: {} } : null; }
    case 'uws': { const node20 = findNode20(); return node20 ? { cmd: node20, args: ['bench/ref/uws-server.mjs'], env: {} } : null; }
    default: throw new Error(`unknown server ${kind}`);
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function run({ quick = false, servers = defaultServers, log = console.error, overrides = {} } = {}) {
  const p = { ...params(quick), ...overrides };
  const notRun = {};
  const runnable = servers.filter((s) => {
    const c = command(s);
    if (!c) notRun[s] = s === 'bun' ? 'the bun binary is not installed (npm ci installs the `bun` devDependency)' : 'no Node 20 binary found for uWebSockets.js v20 (set BENCH_NODE20)';
    return c !== null;
  });
  for (const [s, why] of Object.entries(notRun)) log(`  ${s}: not run: ${why}`);
  const res = await interleaved(runnable, p.runs, async (kind) => {
    const c = command(kind);
    const srv = await startProcess(c.cmd, c.args, { env: c.env, label: kind });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    let loaders = null;
    try {
      loaders = await startLoaders(p.loaders);
      // Warm-up (JIT, token checks, first channels), then gone: the baseline is of a server that has served.
      await loaders.connect(p.warmup, { port: srv.port, channelMode: 'per', startIndex: 1_000_000 });
      await loaders.closeAll();
      await sleep(p.settleMs);
      const rss0 = srv.rss();
      const cpu0 = srv.cpu();
      const idle = await loaders.connect(p.idle, { port: srv.port, channelMode: 'per', startIndex: 0 });
      await sleep(p.settleMs);
      const rss1 = srv.rss();
      const cpu1 = srv.cpu();
      if (idle.failed) log(`  ${kind}: ${idle.failed} idle subscribers failed: ${JSON.stringify(idle.why)}`);
      await loaders.closeAll();
      await sleep(p.settleMs);
      const fan = await loaders.connect(p.fanout, { port: srv.port, channelMode: 'one', channel: 'bench', startIndex: 2_000_000 });
      if (fan.failed) log(`  ${kind}: ${fan.failed} fan-out subscribers failed: ${JSON.stringify(fan.why)}`);
      await publish(srv.port, 'warmup', eventData(0), agent);
      await sleep(Math.min(300, p.settleMs));
      const outcome = await loaders.expect(p.events, 60_000);
      const cpu2 = srv.cpu();
      const sent = [];
      for (let k = 1; k <= p.events; k++) {
        sent.push(nowMs());
        await publish(srv.port, 'bench', eventData(k), agent);
      }
      const got = await outcome.done;
      const cpu3 = srv.cpu();
      const d = deliverySummary(got, sent);
      return {
        idleConnected: idle.ok,
        rssPerConnKB: (rss1 - rss0) / idle.ok / 1024,
        baseRssMiB: rss0 / 2 ** 20,
        connectCpuUs: (cpu1 - cpu0) / idle.ok,
        connectMs: idle.ms,
        subscribers: d.subscribers,
        missing: d.missing,
        cpuPerDeliveryUs: (cpu3 - cpu2) / d.delivered,
        deliveriesPerSec: d.deliveriesPerSec,
      };
    } finally {
      agent.destroy();
      await loaders?.stop();
      await srv.stop();
    }
  }, log);
  return { name, params: p, notRun, ...res, targets: [] };
}

const f = (x, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : '—');

/** Markdown section for RESULTS.md. */
export function render(r) {
  const m = r.median;
  const ref = (k, field) => (m[k] && m.tidings ? m.tidings[field] / m[k][field] : NaN);
  const rows = [...Object.keys(m).map((k) => {
    const x = m[k];
    return `| ${LABELS[k] ?? k} | ${f(x.rssPerConnKB)} | ${f(x.baseRssMiB, 0)} | ${f(x.connectCpuUs, 0)} | ${f(x.cpuPerDeliveryUs)} | ${Math.round(x.deliveriesPerSec).toLocaleString('en-US')} | ${x.missing} |`;
  }), ...Object.entries(r.notRun ?? {}).map(([k, why]) => `| ${LABELS[k] ?? k} | not run: ${why} | | | | | |`)];
  return [
    '## 8. Anchors: Tidings against Bun and uWebSockets.js (same run)',
    '',
    `Each server in its own process, measured from outside through /proc as an operator sees it (RSS without forced GC, user + system CPU of the process). Idle: ${r.params.idle.toLocaleString('en-US')} subscribers on a channel each, RSS over the server's own baseline (after a ${r.params.warmup}-client warm-up). Fan-out: ${r.params.fanout.toLocaleString('en-US')} subscribers on one channel, ${r.params.events} publishes of a 100-byte event back to back; server CPU per delivery. Bun and uWebSockets.js use their native topics (frame built once in C++). Median of ${r.params.runs} interleaved run(s); ${r.params.loaders} loader processes.`,
    '',
    '| server | RSS per idle subscriber (KB) | baseline RSS (MiB) | server CPU per connect (µs) | server CPU per delivery (µs) | deliveries/s | missing |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...rows,
    '',
    `Ratios, Tidings (batching on) over each: RSS per subscriber ${['ws', 'bun', 'uws'].map((k) => `${k} ${f(ref(k, 'rssPerConnKB'))}x`).join(', ')}; CPU per delivery ${['tidings-nobatch', 'ws', 'bun', 'uws'].map((k) => `${k} ${f(ref(k, 'cpuPerDeliveryUs'))}x`).join(', ')}.`,
    '',
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const quick = process.argv.includes('--quick');
  const r = await run({ quick });
  const { writeFileSync, mkdirSync } = await import('node:fs');
  const out = new URL('./out/', import.meta.url);
  mkdirSync(out, { recursive: true });
  writeFileSync(new URL(`anchors${quick ? '.quick' : ''}.json`, out), JSON.stringify(r, null, 2));
  console.log(render(r));
}
