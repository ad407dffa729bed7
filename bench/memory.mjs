// Where a --workers cluster's memory goes (issue 14): per process, resident
// memory split into anonymous (heap, malloc) and file-backed (the node binary's
// pages: shared between processes, yet counted in each one's RSS), before the
// first client and after N idle per-user subscribers on Redis. Variants
// (code builds and/or settings) run interleaved, medians reported.
//   node bench/memory.mjs [--clients 12000] [--workers 6] [--runs 3]
//        [--variant '{"name":...,"args":[...],"main":...,"env":{...}}'] ...
// Without --variant: this checkout's dist/server/main.js with default settings.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { startLoaders } from './lib/loaders.mjs';
import { cpuOf, startProcess, tree, tidingsMain } from './lib/procs.mjs';
import { BENCH_SECRET, BENCH_PUBLISHER_KEY } from './lib/token.mjs';
import { startRedis } from './fanout-redis.mjs';
import { median } from './lib/stats.mjs';

const { values } = parseArgs({ options: {
  clients: { type: 'string', default: '12000' }, workers: { type: 'string', default: '6' },
  runs: { type: 'string', default: '3' }, loaders: { type: 'string', default: '3' },
  settle: { type: 'string', default: '3000' }, idle: { type: 'string', default: '0' }, variant: { type: 'string', multiple: true, default: [] },
} });
const N = Number(values.clients), W = Number(values.workers), RUNS = Number(values.runs);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const MiB = 2 ** 20;

/** --variant '{"name":"x","args":["--flag"],"main":"path/to/main.js","env":{"K":"v"}}' (node args go to the primary; workers inherit them). */
function variants() {
  if (values.variant.length === 0) return [{ name: 'this', args: [], main: tidingsMain(), env: {} }];
  return values.variant.map((v) => {
    const o = JSON.parse(v);
    return { name: o.name, args: o.args ?? [], main: o.main ? [o.main] : tidingsMain(), env: o.env ?? {} };
  });
}

/** VmRSS, RssAnon, RssFile (bytes) of one process. */
function mem(pid) {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? 0) * 1024;
  return { rss: kb('VmRSS'), anon: kb('RssAnon'), file: kb('RssFile') + kb('RssShmem') };
}
const sum = (xs, k) => xs.reduce((a, x) => a + x[k], 0);

async function once(v, log) {
  const redis = await startRedis();
  let srv, loaders;
  try {
    srv = await startProcess(process.execPath, [...v.args, ...v.main, '--workers', String(W)], {
      label: v.name, env: { TIDINGS_PORT: '0', TIDINGS_HOST: '127.0.0.1', TIDINGS_REDIS_URL: redis.url,
        TIDINGS_SUBSCRIBER_SECRET: BENCH_SECRET, TIDINGS_PUBLISHER_KEY: BENCH_PUBLISHER_KEY, TIDINGS_LOG_LEVEL: 'warn', ...v.env },
    });
    loaders = await startLoaders(Number(values.loaders));
    await sleep(Number(values.settle));
    const pids = tree(srv.pid);
    const b = pids.map(mem);
    const cpu0 = pids.slice(1).reduce((t, p) => t + cpuOf(p), 0);
    const c = await loaders.connect(N, { port: srv.port, channelMode: 'per', concurrency: 64, timeoutMs: 300_000 });
    const cpu1 = pids.slice(1).reduce((t, p) => t + cpuOf(p), 0);
    await sleep(Number(values.settle));
    const a = pids.map(mem);
    // Later, idle: what V8's memory reducer (it runs ~8 s after a full GC once allocation is low) gives back.
    let later = null;
    if (Number(values.idle) > 0) { await sleep(Number(values.idle)); later = pids.map(mem); }
    const r = {
      variant: v.name, connected: c.ok, failed: c.failed, connectS: c.ms / 1000,
      primary: b[0].rss / MiB, primaryAnon: b[0].anon / MiB,
      worker: median(b.slice(1).map((x) => x.rss)) / MiB, workerAnon: median(b.slice(1).map((x) => x.anon)) / MiB, workerFile: median(b.slice(1).map((x) => x.file)) / MiB,
      base: sum(b, 'rss') / MiB,
      marginalKB: (sum(a, 'rss') - sum(b, 'rss')) / c.ok / 1024,
      marginalAnonKB: (sum(a, 'anon') - sum(b, 'anon')) / c.ok / 1024,
      workerCpuPerConnectUs: (cpu1 - cpu0) / c.ok,
      marginalIdleKB: later ? (sum(later, 'rss') - sum(b, 'rss')) / c.ok / 1024 : NaN,
    };
    // 100,000 subscribers on a primary and 6 workers: the bases measured here plus the marginal.
    r.base7 = r.primary + 6 * r.worker;
    r.at100kKB = (r.base7 * MiB + r.marginalKB * 1024 * 100_000) / 100_000 / 1024;
    log(JSON.stringify(r, (k, x) => (typeof x === 'number' ? +x.toFixed(2) : x)));
    return r;
  } finally {
    await loaders?.stop();
    await srv?.stop();
    await redis.stop();
  }
}

const vs = variants();
const rows = new Map(vs.map((v) => [v.name, []]));
for (let i = 0; i < RUNS; i++) for (const v of vs) rows.get(v.name).push(await once(v, console.error));
console.log(`${N} per-user subscribers over ${W} workers, medians of ${RUNS} interleaved runs; "at 100k" = primary + 6 workers' bases + 100,000 x marginal.`);
console.log(`| variant | primary MiB | worker MiB (anon/file) | marginal KB/conn (anon) | marginal after ${Number(values.idle) / 1000} s idle | worker CPU µs/connect | at 100k KB/sub |`);
console.log('| --- | --- | --- | --- | --- | --- | --- |');
for (const [name, rs] of rows) {
  const m = (k) => median(rs.map((r) => r[k]));
  console.log(`| ${name} | ${m('primary').toFixed(1)} | ${m('worker').toFixed(1)} (${m('workerAnon').toFixed(1)}/${m('workerFile').toFixed(1)}) | ${m('marginalKB').toFixed(2)} (${m('marginalAnonKB').toFixed(2)}) | ${m('marginalIdleKB').toFixed(2)} | ${m('workerCpuPerConnectUs').toFixed(0)} | ${m('at100kKB').toFixed(2)} |`);
}
process.exit(0);
