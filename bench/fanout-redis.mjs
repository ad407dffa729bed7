// Benchmark 7 (issue: several nodes on Redis): fan-out through Redis. Two
// Tidings nodes, each in its own process, share one redis-server; N
// subscribers per node on one channel; K publishes of a 100-byte event
// through POST /v1/publish, alternating between the nodes (so half of the
// events cross from one node to the other through Redis). Measures
// deliveries/s over both nodes and publish-to-last-delivery latency.
// Reference in the same run: ONE in-memory node with N subscribers (what a
// node costs without Redis in the path).
import http from 'node:http';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { startLoaders } from './lib/loaders.mjs';
import { interleaved } from './lib/bench.mjs';
import { median, nowMs, percentile } from './lib/stats.mjs';
import { startRedisCluster } from './lib/redis-cluster.mjs';
import { BENCH_SECRET, BENCH_PUBLISHER_KEY } from './lib/token.mjs';
import { deliverySummary, eventData, publish } from './fanout.mjs';

export const name = 'fanout-redis';
export const defaultServers = ['redis2', 'cluster2', 'memory1'];
export const LABELS = {
  redis2: 'Tidings, 2 nodes through Redis',
  cluster2: 'Tidings, 2 nodes through a Redis Cluster (3 primaries + 3 replicas)',
  memory1: 'Tidings, 1 node in memory',
};

const ROOT = fileURLToPath(new URL('../', import.meta.url));

export function params(quick) {
  return quick ? { perNode: 500, events: 5, isolated: 3, publishes: 40, loaders: 2, runs: 1 } : { perNode: 15_000, events: 20, isolated: 6, publishes: 400, loaders: 4, runs: 3 };
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

/** A throwaway redis-server: no persistence, its own temp dir, killed at the end. */
export async function startRedis() {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'tidings-bench-redis-'));
  const p = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--loglevel', 'warning'], { stdio: 'ignore' });
  const deadline = Date.now() + 10_000;
  for (;;) {
    const ok = await new Promise((r) => {
      const s = new (http.Agent)().createConnection({ host: '127.0.0.1', port }, () => { s.destroy(); r(true); });
      s.on('error', () => r(false));
    });
    if (ok) break;
    if (Date.now() > deadline) { p.kill('SIGKILL'); throw new Error('redis-server did not start'); }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { url: `redis://127.0.0.1:${port}`, port, pid: p.pid, async stop() { p.kill('SIGKILL'); await new Promise((r) => p.once('exit', r)); rmSync(dir, { recursive: true, force: true }); } };
}

/** A tidings-server process (dist/server/main.js) on a free port; resolves once it prints `listening on`. */
function startNode(env) {
  const p = spawn(process.execPath, [`${ROOT}dist/server/main.js`], {
    env: { ...process.env, TIDINGS_PORT: '0', TIDINGS_SUBSCRIBER_SECRET: BENCH_SECRET, TIDINGS_PUBLISHER_KEY: BENCH_PUBLISHER_KEY, TIDINGS_LOG_LEVEL: 'warn', TIDINGS_DRAIN_LISTEN_MS: '0',
      // The burst queues events behind each other's fan-out on purpose; on a busy machine the
      // overload guard would answer 503 fanout_behind, which is not what this measures.
      TIDINGS_MAX_FANOUT_LAG_MS: '600000', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => { p.kill('SIGKILL'); reject(new Error('tidings node did not start within 20 s')); }, 20_000);
    p.stdout.on('data', (d) => {
      out += d;
      const m = /listening on http:\/\/[^:]+:(\d+)/.exec(out);
      if (m) {
        clearTimeout(t);
        p.stdout.resume();
        resolve({ port: Number(m[1]), async stop() { if (p.exitCode !== null) return; p.kill('SIGKILL'); await new Promise((r) => p.once('exit', r)); } });
      }
    });
    p.once('exit', (c) => { clearTimeout(t); reject(new Error(`tidings node exited with ${c}: ${out}`)); });
  });
}

export async function run({ quick = false, servers = defaultServers, log = console.error, overrides = {} } = {}) {
  const p = { ...params(quick), ...overrides };
  const res = await interleaved(servers, p.runs, async (kind) => {
    const redis = kind === 'redis2' ? await startRedis() : null;
    const cluster = kind === 'cluster2' ? await startRedisCluster() : null;
    const nodes = [];
    const loaders = await startLoaders(p.loaders);
    const agents = [];
    try {
      const count = kind === 'memory1' ? 1 : 2;
      const env = redis ? { TIDINGS_REDIS_URL: redis.url } : cluster ? { TIDINGS_REDIS_CLUSTER: cluster.seeds } : {};
      for (let i = 0; i < count; i++) nodes.push(await startNode(env));
      for (const [i, n] of nodes.entries()) {
        const c = await loaders.connect(p.perNode, { port: n.port, channelMode: 'one', channel: 'bench', startIndex: i * p.perNode });
        if (c.failed) log(`  ${kind}: node ${i}: ${c.failed} subscribers failed: ${JSON.stringify(c.why)}`);
      }
      for (const n of nodes) agents.push(new http.Agent({ keepAlive: true, maxSockets: 1 }));
      for (const [i, n] of nodes.entries()) await publish(n.port, 'warmup', eventData(0), agents[i]);
      await new Promise((r) => setTimeout(r, 300));
      const outcome = await loaders.expect(p.events, 60_000);
      const sent = [];
      for (let k = 1; k <= p.events; k++) {
        const i = (k - 1) % nodes.length; // alternate: every other event crosses nodes through Redis
        sent.push(nowMs());
        await publish(nodes[i].port, 'bench', eventData(k), agents[i]);
      }
      const got = await outcome.done;
      // Then isolated events: each published only once the previous one reached
      // every subscriber, so the latency is one event's, not a queue's.
      const isolated = [];
      for (let j = 0; j < p.isolated; j++) {
        const i = j % nodes.length;
        const one = await loaders.expect(1, 30_000);
        const t0 = nowMs();
        await publish(nodes[i].port, 'bench', eventData(p.events + 1 + j), agents[i]);
        const r = await one.done;
        isolated.push(r.times[0] === null ? NaN : r.times[0] - t0);
      }
      // Publish latency alone: one publish at a time to channels nobody listens
      // to (user:<j>, spread over every shard of a cluster), alternating nodes.
      // On a cluster each one includes the WAIT for a replica.
      const lat = [];
      const p0 = nowMs();
      for (let j = 0; j < p.publishes; j++) {
        const i = j % nodes.length;
        const t0 = nowMs();
        await publish(nodes[i].port, `user:${j}`, eventData(j), agents[i]);
        lat.push(nowMs() - t0);
      }
      const publishesPerSec = p.publishes / ((nowMs() - p0) / 1000);
      const { toLastMs, ...d } = deliverySummary(got, sent);
      return {
        ...d,
        publishToLastP50Ms: median(toLastMs),
        publishToLastMaxMs: Math.max(...toLastMs),
        isolatedToLastP50Ms: median(isolated),
        publishP50Ms: median(lat),
        publishP99Ms: percentile(lat, 99),
        publishesPerSec,
      };
    } finally {
      for (const a of agents) a.destroy();
      await loaders.stop();
      for (const n of nodes) await n.stop();
      await redis?.stop();
      await cluster?.stop();
    }
  }, log);
  return { name, params: p, ...res, targets: [] };
}

/** Markdown section for RESULTS.md. */
export function render(r) {
  const rows = Object.entries(r.median).map(([k, m]) =>
    `| ${LABELS[k] ?? k} | ${m.subscribers ?? '—'} | ${Math.round(m.deliveriesPerSec).toLocaleString('en-US')} | ${m.totalMs?.toFixed(0)} | ${m.publishToLastP50Ms?.toFixed(1)} | ${m.publishToLastMaxMs?.toFixed(1)} | ${m.isolatedToLastP50Ms?.toFixed(1)} | ${m.publishP50Ms?.toFixed(2) ?? '—'} / ${m.publishP99Ms?.toFixed(2) ?? '—'} | ${m.publishesPerSec ? Math.round(m.publishesPerSec) : '—'} | ${m.missing ?? '—'} |`);
  return [
    '## 7. Fan-out through Redis (several nodes)',
    '',
    `${r.params.perNode.toLocaleString('en-US')} subscribers per node on one channel, ${r.params.events} publishes of a 100-byte event through \`POST /v1/publish\`, alternating between the nodes (every other event reaches the other node only through Redis), each sent when the previous one was answered. Each node is a \`tidings-server\` process; one throwaway \`redis-server\` (no persistence). Publish-to-last = from sending the publish to the moment the last subscriber on either node has it; in the burst, later events wait behind earlier fan-outs (and the loaders share the 2 cores), so the isolated column (${r.params.isolated} events, each published after the previous one reached everybody) is the latency of one event. Median of ${r.params.runs} run(s); ${r.params.loaders} loader processes.`,
    '',
    `Publish latency: ${r.params.publishes} publishes one at a time to \`user:<j>\` channels nobody listens to (on a cluster: spread over every shard, each answered after a replica acknowledged it with \`WAIT 1\`), alternating nodes.`,
    '',
    '| setup | subscribers | deliveries/s (burst) | burst total (ms) | burst: publish → last p50 (ms) | burst max (ms) | one event alone: publish → last p50 (ms) | publish p50 / p99 (ms) | publishes/s (one at a time) | missing |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows,
    '',
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const quick = process.argv.includes('--quick');
  const r = await run({ quick });
  const { writeFileSync, mkdirSync } = await import('node:fs');
  mkdirSync(`${ROOT}bench/out`, { recursive: true });
  writeFileSync(`${ROOT}bench/out/fanout-redis${quick ? '.quick' : ''}.json`, JSON.stringify(r, null, 2));
  console.log(render(r));
}
