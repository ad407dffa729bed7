// Measuring server processes from outside, as an operator sees them: resident
// memory (VmRSS, no forced GC) and CPU time (utime + stime) from /proc, for a
// process and its children (a cluster primary and its workers). Works for any
// server whatever its runtime (Node, Bun, uWebSockets.js), with no IPC into it.
import { readFileSync, readdirSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** Clock ticks per second for /proc/<pid>/stat times (USER_HZ, 100 on Linux). */
const HZ = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** Resident set size in bytes, 0 if the process is gone. */
export function rssOf(pid) {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch { return 0; }
}

/** CPU time in µs (user + system; `which`: only 'user' or 'sys'), 0 if the process is gone. */
export function cpuOf(pid, which = 'all') {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = which === 'user' ? Number(f[11]) : which === 'sys' ? Number(f[12]) : Number(f[11]) + Number(f[12]);
    return (ticks * 1e6) / HZ;
  } catch { return 0; }
}

/** pid and every live descendant (cluster workers). */
export function tree(pid) {
  const parent = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      parent.set(Number(d), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch { /* gone */ }
  }
  const out = [pid];
  for (let i = 0; i < out.length; i++) for (const [p, pp] of parent) if (pp === out[i]) out.push(p);
  return out;
}

/** Summed over a process tree. */
export const treeRss = (pid) => tree(pid).reduce((a, p) => a + rssOf(p), 0);
export const treeCpu = (pid) => tree(pid).reduce((a, p) => a + cpuOf(p), 0);

/**
 * A Node 20 binary outside node_modules (uWebSockets.js 20 ships no binary
 * that loads on this machine's Node 24 build): BENCH_NODE20, else the first
 * `node` on PATH, past node_modules/.bin, that says v20. Null when none.
 */
export function findNode20() {
  const candidates = [process.env.BENCH_NODE20, ...(process.env.PATH ?? '').split(delimiter).filter((d) => d && !d.includes('node_modules')).map((d) => join(d, 'node'))];
  for (const c of candidates) {
    if (!c || !existsSync(c)) continue;
    const v = spawnSync(c, ['--version'], { encoding: 'utf8' }).stdout?.trim() ?? '';
    if (v.startsWith('v20.')) return c;
  }
  return null;
}

/** The Bun binary installed by the `bun` devDependency, or null. */
export function findBun() {
  for (const c of [process.env.BENCH_BUN, join(ROOT, 'node_modules/bun/bin/bun.exe'), join(ROOT, 'node_modules/.bin/bun')]) {
    if (c && existsSync(c) && spawnSync(c, ['--version']).status === 0) return c;
  }
  return null;
}

/** Process groups started here: killed if the benchmark exits without stopping them. */
const started = new Set();
process.on('exit', () => { for (const pid of started) { try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ } } });

/**
 * Start a server as its own process; resolves once it prints
 * `listening on http://host:port`. `stop()` kills its whole tree.
 */
export function startProcess(cmd, args, { env = {}, timeoutMs = 30_000, label = cmd } = {}) {
  const p = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'], detached: true });
  started.add(p.pid);
  p.once('exit', () => started.delete(p.pid));
  return new Promise((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => { kill(); reject(new Error(`${label} did not start within ${timeoutMs} ms: ${out.slice(-500)}`)); }, timeoutMs);
    const kill = () => { try { process.kill(-p.pid, 'SIGKILL'); } catch { /* gone */ } };
    const exited = new Promise((r) => p.once('exit', r));
    p.stdout.on('data', (d) => {
      if (out === null) return;
      out += d;
      const m = /listening on http:\/\/[^\s]*:(\d+)/.exec(out);
      if (m) {
        out = null;
        clearTimeout(t);
        p.stdout.resume();
        resolve({
          pid: p.pid,
          port: Number(m[1]),
          rss: () => treeRss(p.pid),
          cpu: () => treeCpu(p.pid),
          processes: () => tree(p.pid).length,
          async stop() {
            if (p.exitCode !== null || p.signalCode !== null) return;
            kill();
            await exited;
          },
        });
      }
    });
    p.once('exit', (c, sig) => { clearTimeout(t); if (out !== null) reject(new Error(`${label} exited (${c ?? sig}) before listening: ${out.slice(-500)}`)); });
  });
}

/** Node arguments that run tidings-server: the build when there is one, else the sources through tsx. */
export function tidingsMain() {
  return existsSync(join(ROOT, 'dist/server/main.js')) ? ['dist/server/main.js'] : ['--import', 'tsx', 'server/main.ts'];
}
