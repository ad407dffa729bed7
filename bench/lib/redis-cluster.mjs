// A throwaway Redis Cluster for benchmarks: N primaries + one replica each on
// free loopback ports (redis-cli --cluster create --cluster-replicas 1), no
// persistence; stop() kills every process and removes the temp dir.
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

const cli = (port, ...args) => run('redis-cli', ['-p', String(port), ...args], { timeout: 10_000 }).then((r) => r.stdout);

export async function startRedisCluster({ primaries = 3 } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'tidings-bench-cluster-'));
  const ports = [];
  while (ports.length < primaries * 2) {
    const p = await freePort();
    if (p + 10_000 < 65_536 && !ports.includes(p)) ports.push(p);
  }
  const procs = ports.map((port) => spawn('redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--cluster-enabled', 'yes',
    '--cluster-config-file', `nodes-${port}.conf`, '--cluster-node-timeout', '2000', '--repl-diskless-sync-delay', '0',
    '--save', '', '--appendonly', 'no', '--loglevel', 'warning',
  ], { stdio: 'ignore' }));
  const stop = async () => {
    await Promise.all(procs.map((p) => (p.exitCode !== null || p.signalCode !== null ? null : new Promise((r) => { p.once('exit', r); p.kill('SIGKILL'); }))));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const deadline = Date.now() + 30_000;
    const until = async (cond, what) => {
      while (!(await cond().catch(() => false))) {
        if (Date.now() > deadline) throw new Error(`redis cluster: ${what}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    for (const port of ports) await until(async () => (await cli(port, 'PING')).trim() === 'PONG', `redis-server ${port} did not start`);
    await run('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '1', '--cluster-yes'], { timeout: 30_000 });
    await until(async () => (await Promise.all(ports.map((p) => cli(p, 'CLUSTER', 'INFO')))).every((s) => s.includes('cluster_state:ok')), 'not ok');
    // Every primary has its replica online (so publishes WAIT for it, as in production).
    await until(async () => {
      const roles = await Promise.all(ports.map((p) => cli(p, 'ROLE')));
      return roles.filter((r) => r.startsWith('master')).every((r) => r.split('\n').length > 3);
    }, 'replicas not online');
  } catch (err) {
    await stop();
    throw err;
  }
  return { seeds: ports.map((p) => `127.0.0.1:${p}`).join(','), ports, stop };
}
