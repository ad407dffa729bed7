// Benchmark 3: the upgrade.
// (a) in-process: ns/op and bytes allocated per upgrade, ours vs http.Server +
//     ws.handleUpgrade, in a separate process (upgrade-inproc.mjs) so the big
//     young generation that makes allocation measurable affects nothing else.
// (b) over loopback: server CPU (user+system, measured inside the server) per
//     upgrade + close-handshake, with raw TCP clients from the loader processes.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { startServer, cpuMicros } from './lib/servers.mjs';
import { startLoaders } from './lib/loaders.mjs';
import { interleaved, target } from './lib/bench.mjs';
import { median } from './lib/stats.mjs';

export const name = 'upgrade';
export const defaultServers = ['tidings', 'ws', 'net'];
const ROOT = fileURLToPath(new URL('../', import.meta.url));

export function params(quick) {
  return quick ? { inprocRuns: 1, churn: 300, warmup: 100, loaders: 2, runs: 1 } : { inprocRuns: 5, churn: 10_000, warmup: 1_000, loaders: 4, runs: 3 };
}

function inproc(quick) {
  const flags = ['--expose-gc', '--min-semi-space-size=64', '--max-semi-space-size=64'];
  if (!existsSync(`${ROOT}dist/server/ws/upgrade.js`)) flags.push('--import', 'tsx');
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [...flags, fileURLToPath(new URL('./upgrade-inproc.mjs', import.meta.url)), ...(quick ? ['--quick'] : [])], { cwd: ROOT, timeout: 120_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`upgrade-inproc: ${err.message}\n${stderr}`));
      else resolve(JSON.parse(stdout.trim().split('\n').pop()));
    });
  });
}

export async function run({ quick = false, servers = defaultServers, log = console.error, overrides = {} } = {}) {
  const p = { ...params(quick), ...overrides };
  const a = [];
  for (let i = 0; i < p.inprocRuns; i++) {
    const r = await inproc(quick);
    log(`  [in-process run ${i + 1}/${p.inprocRuns}] ${JSON.stringify(r)}`);
    a.push(r);
  }
  const inprocess = {};
  for (const k of ['tidings', 'ws', 'wsNet', 'fakeSocket']) inprocess[k] = { nsPerOp: median(a.map((r) => r[k].nsPerOp)), bytesPerOp: median(a.map((r) => r[k].bytesPerOp)) };

  const loop = await interleaved(servers, p.runs, async (kind) => {
    const srv = await startServer(kind);
    const loaders = await startLoaders(p.loaders);
    try {
      await loaders.churn(p.warmup, { port: srv.port });
      const c0 = await srv.cpu();
      const r = await loaders.churn(p.churn, { port: srv.port });
      const c1 = await srv.cpu();
      if (r.failed) log(`  ${kind}: ${r.failed} upgrades failed`);
      return { upgrades: r.ok, failed: r.failed, cpuPerUpgradeUs: (cpuMicros(c1) - cpuMicros(c0)) / r.ok, upgradesPerSec: r.ok / (r.ms / 1000) };
    } finally {
      await loaders.stop();
      await srv.stop();
    }
  }, log);

  const targets = [
    target('in-process speed-up vs http.Server + ws.handleUpgrade (x)', inprocess.wsNet.nsPerOp / inprocess.tidings.nsPerOp, '>=', 5),
    target('in-process bytes allocated, ws / ours (x)', inprocess.wsNet.bytesPerOp / Math.max(inprocess.tidings.bytesPerOp, 1), '>=', 10),
  ];
  const t = loop.median.tidings, w = loop.median.ws;
  if (t && w) targets.push(target('server CPU per upgrade+close vs ws (ratio)', t.cpuPerUpgradeUs / w.cpuPerUpgradeUs, '<=', 0.6));
  return { name, params: p, inprocess, inprocessRaw: a, ...loop, targets };
}
