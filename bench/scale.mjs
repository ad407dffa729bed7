// Benchmark 9 (issue 14): 100,000 subscribers on one machine. A
// `tidings-server --workers W` cluster on one redis-server, clients spread over
// loader processes bound to 127.0.0.2, .3, ... (loopback only), in two shapes:
//   per:    one channel per user (user:<i>, the web-mail case); then R publishes/s
//           to random users for S seconds through POST /v1/publish:
//           publish→delivery p50/p99 and events lost among connected clients.
//   shared: everyone on one channel; broadcasts, each once the previous one has
//           reached everybody: publish→last delivery.
// Both: all reach `welcome`; total server RSS as an operator sees it (primary +
// workers summed from /proc, no forced GC) per subscriber, and Redis apart
// (RSS and used_memory); time to connect everyone; server CPU per connect;
// Redis commands per subscriber. Optionally first a smaller connect run with
// TIDINGS_WORKER_ACCEPT=primary against reuseport (is the primary the
// bottleneck for accepting?).
//
// Bounded: counts and phases are fixed, each wait has a timeout, and the whole
// run stops itself after `hardLimitMs` (killing the cluster, loaders and Redis).
//   node bench/scale.mjs [--quick] [--shapes per,shared] [--no-accept]
import http from 'node:http';
import { Redis } from 'ioredis';
import { startLoaders } from './lib/loaders.mjs';
import { machine } from './lib/bench.mjs';
import { median, nowMs, percentile } from './lib/stats.mjs';
import { BENCH_SECRET, BENCH_PUBLISHER_KEY } from './lib/token.mjs';
import { rssOf, cpuOf, startProcess, tidingsMain, tree } from './lib/procs.mjs';
import { startRedis } from './fanout-redis.mjs';
import { publish } from './fanout.mjs';

export const name = 'scale';

export function params(quick) {
  return quick
    // publishVia: per-user publishes through Redis (FCALL, the backend path) or POST /v1/publish ('http').
    ? { publishVia: 'redis', subscribers: 1_500, workers: 2, loaders: 2, concurrency: 32, rate: 200, seconds: 2, broadcasts: 2, acceptSubscribers: 600, settleMs: 1000, reserveMs: 10_000, hardLimitMs: 120_000 }
    : { publishVia: 'redis', subscribers: 100_000, workers: 6, loaders: 6, concurrency: 256, rate: 1_000, seconds: 30, broadcasts: 3, acceptSubscribers: 6_000, settleMs: 3000, reserveMs: 45_000, hardLimitMs: 12 * 60_000 };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const MiB = 2 ** 20;

/** Every command's call count (INFO commandstats counts the calls functions make too). */
async function commandCalls(admin) {
  const out = {};
  for (const m of (await admin.info('commandstats')).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out[m[1]] = Number(m[2]);
  return out;
}
async function usedMemory(admin) {
  return Number(/^used_memory:(\d+)/m.exec(await admin.info('memory'))[1]);
}

/** Server processes (primary first, then workers) with their RSS and CPU. */
function snapshot(srv) {
  const pids = tree(srv.pid);
  return { rss: pids.map(rssOf), cpu: pids.map(cpuOf) };
}
const sum = (xs) => xs.reduce((a, b) => a + b, 0);

/** `data` JSON of exactly about 100 bytes whose "t" is the publish time (the loaders read it). */
function timedData(seq) {
  const base = `{"t":${nowMs().toFixed(3)},"seq":${seq},"pad":""}`;
  return `{"t":${nowMs().toFixed(3)},"seq":${seq},"pad":"${'x'.repeat(Math.max(0, 100 - base.length))}"}`;
}

/**
 * The storage backend's way (docs/redis.md "Publishing from a storage backend"):
 * one FCALL of the tidings library, same semantics as POST /v1/publish, without
 * an HTTP request for the server to parse. Key names as docs/redis.md lists them.
 */
function publishRedis(admin, channel, json) {
  return admin.fcall('tidings_publish', 2, `tidings:{${channel}}:h`, `tidings:{${channel}}:g`, channel, json, '1000', '604800');
}

async function startCluster(p, redisUrl, env = {}) {
  // BENCH_NODE_FLAGS: Node flags for the primary, which its workers inherit (experiments).
  const flags = (process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean);
  // BENCH_TIDINGS_MAIN: another build's main.js (before/after comparisons in the same conditions).
  const main = process.env.BENCH_TIDINGS_MAIN ? [process.env.BENCH_TIDINGS_MAIN] : tidingsMain();
  return startProcess(process.execPath, [...flags, ...main, '--workers', String(p.workers)], {
    label: 'tidings-server cluster',
    env: {
      TIDINGS_PORT: '0', TIDINGS_HOST: '127.0.0.1', TIDINGS_REDIS_URL: redisUrl,
      TIDINGS_SUBSCRIBER_SECRET: BENCH_SECRET, TIDINGS_PUBLISHER_KEY: BENCH_PUBLISHER_KEY, TIDINGS_LOG_LEVEL: 'warn',
      // BENCH_TIDINGS_ENV: JSON of extra settings for the cluster (experiments).
      ...JSON.parse(process.env.BENCH_TIDINGS_ENV || '{}'),
      ...env,
    },
  });
}

/** CPU (µs) of every process class: server primary, server workers, loaders, redis-server, this process. */
function classCpu(srv, loaders, redisPid) {
  const pids = tree(srv.pid);
  return {
    primary: cpuOf(pids[0]),
    workers: sum(pids.slice(1).map(cpuOf)),
    loaders: sum(loaders.pids.map(cpuOf)),
    redis: cpuOf(redisPid),
    bench: (process.cpuUsage().user + process.cpuUsage().system),
    // Kernel part (stime) of workers and loaders: loopback TCP, syscalls.
    workersSys: sum(pids.slice(1).map((x) => cpuOf(x, 'sys'))),
    loadersSys: sum(loaders.pids.map((x) => cpuOf(x, 'sys'))),
  };
}
const cpuPer = (a, b, n) => Object.fromEntries(Object.keys(a).map((k) => [k, Math.round((b[k] - a[k]) / n)]));

/**
 * Connect `n` subscribers with the given accept mode: connects/s and CPU per
 * connect of every process class (primary, workers, loaders, Redis), to see
 * where connect time goes.
 */
async function acceptRun(p, mode, log, shape = 'per') {
  const redis = await startRedis();
  let srv = null, loaders = null;
  try {
    srv = await startCluster(p, redis.url, { TIDINGS_WORKER_ACCEPT: mode });
    loaders = await startLoaders(p.loaders);
    await sleep(p.settleMs);
    const mode_ = { channelMode: shape === 'per' ? 'per' : 'one', channel: 'all', concurrency: p.concurrency, timeoutMs: 300_000 };
    // warmup: clients connected before measuring, so that the figures are the
    // steady state (JIT-compiled, heaps grown) rather than each process's first second.
    if (p.warmup) await loaders.connect(p.warmup, { port: srv.port, ...mode_ });
    await loaders.prepare(p.acceptSubscribers, { ...mode_, startIndex: p.warmup ?? 0 });
    const s0 = classCpu(srv, loaders, redis.pid);
    const c = await loaders.connect(p.acceptSubscribers, { port: srv.port, startIndex: p.warmup ?? 0, ...mode_ });
    const s1 = classCpu(srv, loaders, redis.pid);
    const per = cpuPer(s0, s1, c.ok);
    const row = {
      mode, shape, connected: c.ok, failed: c.failed, connectMs: c.ms,
      connectsPerSec: c.ok / (c.ms / 1000),
      primaryCpuPerConnectUs: per.primary,
      workersCpuPerConnectUs: per.workers,
      loadersCpuPerConnectUs: per.loaders,
      redisCpuPerConnectUs: per.redis,
      benchCpuPerConnectUs: per.bench,
      workersSysPerConnectUs: per.workersSys,
      loadersSysPerConnectUs: per.loadersSys,
    };
    if (c.failed) log(`  [accept ${mode}] failed: ${JSON.stringify(c.why)}`);
    log(`  [accept ${mode}] ${JSON.stringify(row)}`);
    return row;
  } finally {
    await loaders?.stop();
    if (srv && process.env.BENCH_GRACEFUL) {
      // Profiling (NODE_OPTIONS=--cpu-prof): profiles are written at a clean exit only.
      try { process.kill(srv.pid, 'SIGTERM'); } catch { /* gone */ }
      for (let i = 0; i < 150 && tree(srv.pid).some((x) => cpuOf(x) > 0); i++) await sleep(100);
    }
    await srv?.stop();
    await redis.stop();
  }
}

/** One shape, finished by `deadlineAt`: clients not started by then are reported as such. */
async function shapeRun(p, shape, log, deadlineAt) {
  const redis = await startRedis();
  const admin = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  let srv = null, loaders = null;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
  try {
    await admin.connect();
    srv = await startCluster(p, redis.url);
    loaders = await startLoaders(p.loaders);
    await sleep(p.settleMs);
    const base = snapshot(srv);
    const redisBase = { rss: rssOf(redis.pid), used: await usedMemory(admin), calls: await commandCalls(admin) };
    log(`  [${shape}] before clients: ${base.rss.length} processes, ${(sum(base.rss) / MiB).toFixed(0)} MiB (primary ${(base.rss[0] / MiB).toFixed(0)} MiB)`);

    // Tokens and hello frames are made before the clock starts: in real life
    // the app's backend signs them, not the browsers' CPU (here: the loaders').
    await loaders.prepare(p.subscribers, { channelMode: shape === 'per' ? 'per' : 'one', channel: 'all' });
    const t0 = nowMs();
    const c = await loaders.connect(p.subscribers, {
      // No client is started past what is left of the budget, less what the
      // measuring phases after the connect need: a slow machine reports how
      // many reached welcome in the time, and measures with those.
      port: srv.port, channelMode: shape === 'per' ? 'per' : 'one', channel: 'all', concurrency: p.concurrency, timeoutMs: 60_000,
      deadline: deadlineAt - (p.seconds * 1000 + 6 * p.settleMs + p.reserveMs), // reserveMs: teardown and slack
    });
    const connectMs = nowMs() - t0;
    const afterConnect = snapshot(srv);
    const calls = await commandCalls(admin);
    if (c.failed) log(`  [${shape}] ${c.failed} subscribers failed: ${JSON.stringify(c.why)}`);
    if (c.notStarted) log(`  [${shape}] ${c.notStarted} subscribers not started: the time budget ran out`);
    log(`  [${shape}] ${c.ok} connected in ${(connectMs / 1000).toFixed(1)} s`);
    await sleep(p.settleMs);
    const idle = snapshot(srv);
    const redisIdle = { rss: rssOf(redis.pid), used: await usedMemory(admin) };
    const redisCalls = {};
    for (const [k, v] of Object.entries(calls)) if (v - (redisBase.calls[k] ?? 0) > 0) redisCalls[k] = (v - (redisBase.calls[k] ?? 0)) / c.ok;

    const row = {
      shape,
      subscribers: c.ok,
      failed: c.failed,
      notStarted: c.notStarted,
      processes: idle.rss.length,
      connectMs,
      connectsPerSec: c.ok / (connectMs / 1000),
      serverCpuPerConnectUs: (sum(afterConnect.cpu) - sum(base.cpu)) / c.ok,
      primaryCpuPerConnectUs: (afterConnect.cpu[0] - base.cpu[0]) / c.ok,
      baseRssMiB: sum(base.rss) / MiB,
      primaryRssMiB: idle.rss[0] / MiB,
      workerRssMiB: idle.rss.slice(1).map((x) => Math.round(x / MiB)),
      totalRssMiB: sum(idle.rss) / MiB,
      rssPerSubscriberKB: sum(idle.rss) / c.ok / 1024,
      marginalRssPerSubscriberKB: (sum(idle.rss) - sum(base.rss)) / c.ok / 1024,
      redisRssMiB: redisIdle.rss / MiB,
      redisUsedPerSubscriberB: (redisIdle.used - redisBase.used) / c.ok,
      redisCommandsPerSubscriber: sum(Object.values(redisCalls)),
      redisCommands: redisCalls,
    };

    if (shape === 'per') {
      // R publishes/s to random users for S seconds, in ticks of 10 ms.
      await loaders.latencyStart();
      const sent = new Map();
      let errors = 0, seq = 0;
      const inflight = new Set();
      const cpu0 = snapshot(srv).cpu;
      const end = nowMs() + p.seconds * 1000;
      const perTick = p.rate / 100;
      let due = nowMs();
      while (nowMs() < end) {
        due += 10;
        for (let k = 0; k < perTick; k++) {
          const user = Math.floor(Math.random() * p.subscribers);
          const pr = (p.publishVia === 'http' ? publish(srv.port, `user:${user}`, timedData(++seq), agent) : publishRedis(admin, `user:${user}`, timedData(++seq))).then(
            () => sent.set(user, (sent.get(user) ?? 0) + 1),
            () => { errors++; },
          );
          inflight.add(pr);
          pr.finally(() => inflight.delete(pr));
        }
        const wait = due - nowMs();
        if (wait > 0) await sleep(wait);
      }
      await Promise.all(inflight);
      // Stragglers: a delivery still in flight is late, not lost.
      await sleep(Math.max(p.settleMs, 3000));
      const cpu1 = snapshot(srv).cpu;
      const got = await loaders.latencyStop();
      let expected = 0, lost = 0, extra = 0;
      for (let i = 0; i < got.users.length; i++) {
        const want = sent.get(got.users[i]) ?? 0;
        expected += want;
        lost += Math.max(0, want - got.got[i]);
        extra += Math.max(0, got.got[i] - want);
      }
      Object.assign(row, {
        published: seq - errors,
        publishErrors: errors,
        publishesPerSec: (seq - errors) / p.seconds,
        expectedDeliveries: expected,
        lost,
        duplicates: extra,
        clientsClosedMeanwhile: got.closed,
        latencyP50Ms: percentile(got.times, 50),
        latencyP99Ms: percentile(got.times, 99),
        latencyMaxMs: Math.max(...got.times),
        serverCpuPerPublishUs: (sum(cpu1) - sum(cpu0)) / Math.max(1, seq - errors),
      });
    } else {
      const toLast = [];
      let missing = 0;
      const cpu0 = snapshot(srv).cpu;
      for (let b = 0; b < p.broadcasts; b++) {
        const outcome = await loaders.expect(1, 120_000);
        const t = nowMs();
        await publish(srv.port, 'all', timedData(b), agent);
        const r = await outcome.done;
        toLast.push(r.times[0] === null ? NaN : r.times[0] - t);
        missing += r.missing[0];
        await sleep(Math.min(1000, p.settleMs));
      }
      const cpu1 = snapshot(srv).cpu;
      Object.assign(row, {
        broadcasts: p.broadcasts,
        broadcastToLastMs: median(toLast),
        broadcastToLastAllMs: toLast.map((x) => Math.round(x)),
        missing,
        serverCpuPerDeliveryUs: (sum(cpu1) - sum(cpu0)) / (p.broadcasts * c.ok - missing),
      });
    }
    log(`  [${shape}] ${JSON.stringify(row)}`);
    return row;
  } finally {
    agent.destroy();
    await loaders?.stop();
    await srv?.stop();
    admin.disconnect();
    await redis.stop();
  }
}

export async function run({ quick = false, log = console.error, overrides = {}, shapes = ['per', 'shared'], accept = true } = {}) {
  const p = { ...params(quick), ...overrides };
  const t0 = Date.now();
  const deadlineAt = t0 + p.hardLimitMs;
  // The backstop, past the budget that every phase already respects: procs.mjs
  // kills the server groups on exit; loaders exit when their IPC channel goes.
  const backstop = setTimeout(() => {
    log(`scale: over ${p.hardLimitMs / 1000 + 90} s, stopping`);
    process.exit(3);
  }, p.hardLimitMs + 90_000);
  backstop.unref();
  try {
    const acceptRows = [];
    if (accept) for (const mode of ['primary', 'reuseport']) acceptRows.push(await acceptRun(p, mode, log));
    const rows = [];
    for (const [i, s] of shapes.entries()) {
      if (Date.now() > deadlineAt - 60_000) { rows.push({ shape: s, error: `not run: the ${p.hardLimitMs / 60_000}-minute budget was spent` }); continue; }
      // Each shape left gets an equal share of what is left of the budget.
      const shareEnd = Date.now() + (deadlineAt - Date.now()) / (shapes.length - i);
      try {
        rows.push(await shapeRun(p, s, log, shareEnd));
      } catch (err) {
        log(`  [${s}] failed: ${err?.message ?? err}`);
        rows.push({ shape: s, error: String(err?.message ?? err) });
      }
    }
    return { name, params: p, accept: acceptRows, rows, seconds: (Date.now() - t0) / 1000, targets: targets(rows.filter((r) => !r.error)) };
  } finally {
    clearTimeout(backstop);
  }
}

function targets(rows) {
  const per = rows.find((r) => r.shape === 'per');
  const t = (what, value, op, limit) => ({ what, value, op, limit, pass: !Number.isFinite(value) ? null : op === '<=' ? value <= limit : value >= limit });
  const out = [];
  for (const r of rows) {
    out.push(t(`${r.shape}: subscribers that reached welcome`, r.subscribers, '>=', r.subscribers + r.failed + (r.notStarted ?? 0)));
    out.push(t(`${r.shape}: server RSS per subscriber, all processes (KB)`, r.rssPerSubscriberKB, '<=', 8));
    out.push(t(`${r.shape}: time to connect everyone (s)`, r.connectMs / 1000, '<=', 60));
  }
  if (per) {
    out.push(t('per: publish→delivery p99 (ms)', per.latencyP99Ms, '<=', 250));
    out.push(t('per: events lost among connected clients', per.lost, '<=', 0));
  }
  return out;
}

const f = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '—');
const n = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '—');

/** Markdown section for RESULTS.md. */
export function render(r) {
  const p = r.params;
  const lines = [
    `## 9. ${n(p.subscribers)} subscribers on one machine (cluster + Redis)`,
    '',
    `\`tidings-server --workers ${p.workers}\` (defaults: SO_REUSEPORT accept, 1 MB semi-space and \`--optimize-for-size\` per worker, fan-out batching) on one throwaway \`redis-server\`; ${p.loaders} loader processes on 127.0.0.2–.${p.loaders + 1}, ${p.concurrency} handshakes in flight each. RSS summed over the primary and every worker from /proc, no forced GC (what an operator sees); Redis apart. Per-user: ${n(p.rate)} publishes/s to random users for ${p.seconds} s, ${p.publishVia === 'http' ? 'through \`POST /v1/publish\` (keep-alive, 32 sockets)' : 'as a storage backend publishes (\`FCALL tidings_publish\` on Redis, docs/redis.md)'}; "lost" counts only clients that were connected the whole time. Shared: ${p.broadcasts} broadcasts to everyone, each after the previous one reached all. The loaders share the 2 cores with the server, so connect times include their CPU.`,
    '',
    '| shape | reached welcome | failed (not started: budget) | connect (s) | server CPU per connect (µs) | RSS total (MiB) | RSS per subscriber (KB) | marginal per subscriber (KB) | primary (MiB) | workers (MiB) | Redis RSS (MiB) | Redis used per subscriber (B) | Redis commands per subscriber |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...r.rows.filter((x) => x.error).map((x) => `| ${x.shape === 'per' ? 'one channel per user' : 'one shared channel'} | ${x.error} | | | | | | | | | | | |`),
    ...r.rows.filter((x) => !x.error).map((x) => `| ${x.shape === 'per' ? 'one channel per user' : 'one shared channel'} | ${n(x.subscribers)} | ${n(x.failed)}${x.notStarted ? ` (${n(x.notStarted)})` : ''} | ${f(x.connectMs / 1000)} | ${n(x.serverCpuPerConnectUs)} | ${n(x.totalRssMiB)} | ${f(x.rssPerSubscriberKB, 2)} | ${f(x.marginalRssPerSubscriberKB, 2)} | ${n(x.primaryRssMiB)} | ${x.workerRssMiB.join(', ')} | ${n(x.redisRssMiB)} | ${n(x.redisUsedPerSubscriberB)} | ${f(x.redisCommandsPerSubscriber, 2)} (${Object.entries(x.redisCommands).map(([k, v]) => `${k} ${f(v, 2)}`).join(', ')}) |`),
    '',
  ];
  const per = r.rows.find((x) => x.shape === 'per' && !x.error);
  if (per) {
    lines.push(`Per-user delivery: ${n(per.published)} publishes (${f(per.publishesPerSec, 0)}/s, ${per.publishErrors} errors), publish→delivery p50 ${f(per.latencyP50Ms)} ms, p99 ${f(per.latencyP99Ms)} ms, max ${f(per.latencyMaxMs)} ms; ${n(per.expectedDeliveries)} deliveries expected by connected clients, ${per.lost} lost, ${per.duplicates} duplicates; ${per.clientsClosedMeanwhile} clients closed meanwhile; server CPU ${n(per.serverCpuPerPublishUs)} µs per publish (${p.publishVia === 'http' ? 'HTTP publish, Redis round trip and delivery' : 'the live message from Redis and the delivery'}).`, '');
  }
  const shared = r.rows.find((x) => x.shape === 'shared' && !x.error);
  if (shared) {
    lines.push(`Broadcast to ${n(shared.subscribers)}: publish → last delivery median ${n(shared.broadcastToLastMs)} ms (each: ${shared.broadcastToLastAllMs.join(', ')} ms), ${shared.missing} missing; server CPU ${f(shared.serverCpuPerDeliveryUs, 2)} µs per delivery.`, '');
  }
  if (r.accept?.length) {
    lines.push(`Accepting (${n(p.acceptSubscribers)} per-user subscribers, same cluster size, separate runs before the above):`, '',
      '| TIDINGS_WORKER_ACCEPT | connected | connect (s) | connects/s | primary CPU per connect (µs) | workers CPU per connect (µs) |',
      '| --- | --- | --- | --- | --- | --- |',
      ...r.accept.map((a) => `| ${a.mode} | ${n(a.connected)} | ${f(a.connectMs / 1000)} | ${n(a.connectsPerSec)} | ${n(a.primaryCpuPerConnectUs)} | ${n(a.workersCpuPerConnectUs)} |`), '');
  }
  lines.push(`Run: ${r.machine?.date ?? ''}, ${r.machine?.cpu ?? ''} (${r.machine?.cores ?? '?'} cores), Node ${r.machine?.node ?? ''}, ${f(r.seconds, 0)} s in all.`, '');
  return lines.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  const shapesArg = args.find((a) => a.startsWith('--shapes='));
  // --set=key=value,...: override params (experiments: --set=subscribers=12000,workers=2).
  const overrides = {};
  for (const kv of (args.find((a) => a.startsWith('--set='))?.slice(6).split(',') ?? [])) { const [k, v] = kv.split('='); overrides[k] = Number(v); }
  // --probe[=reuseport|primary]: only a connect run of acceptSubscribers clients (set
  // it with --set) and CPU per connect by process class; nothing written.
  const probe = args.find((a) => a === '--probe' || a.startsWith('--probe='));
  if (probe) {
    const p = { ...params(quick), ...overrides };
    const shape = shapesArg ? shapesArg.slice(9) : 'per';
    await acceptRun(p, probe.includes('=') ? probe.slice(8) : 'reuseport', console.error, shape);
    process.exit(0);
  }
  const r = await run({ quick, overrides, accept: !args.includes('--no-accept'), ...(shapesArg ? { shapes: shapesArg.slice(9).split(',') } : {}) });
  r.machine = machine();
  const { writeFileSync, mkdirSync } = await import('node:fs');
  const out = new URL('./out/', import.meta.url);
  mkdirSync(out, { recursive: true });
  writeFileSync(new URL(`scale${quick ? '.quick' : ''}.json`, out), JSON.stringify(r, null, 2));
  console.log(render(r));
  for (const t of r.targets) console.error(`${t.pass === null ? '?' : t.pass ? 'PASS' : 'MISS'} ${t.what}: ${f(t.value, 2)} (target ${t.op} ${t.limit})`);
  process.exit(0);
}
