import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { CLUSTER_PORT_ENV, RESTART_POLICY, listenOptions, planRestart, workerExecArgv } from '../../server/cluster.js';
import { DEFAULTS } from '../../server/config.js';
import { startRedis } from '../support/redis.js';

describe('worker restart policy (pure)', () => {
  const p = { maxRestarts: 3, windowMs: 10_000, baseDelayMs: 100, capDelayMs: 500 };

  it('restarts a first crash after the base delay, doubling per recent exit up to the cap', () => {
    expect(planRestart([1000], 1000, p)).toEqual({ action: 'restart', delayMs: 100 });
    expect(planRestart([1000, 2000], 2000, p)).toEqual({ action: 'restart', delayMs: 200 });
    expect(planRestart([1000, 2000, 3000], 3000, p)).toEqual({ action: 'restart', delayMs: 400 });
    expect(planRestart([1, 2, 3], 3, { ...p, maxRestarts: 10, capDelayMs: 300 })).toEqual({ action: 'restart', delayMs: 300 });
  });

  it('gives up past maxRestarts exits within the window, not at it', () => {
    expect(planRestart([1, 2, 3], 3, p).action).toBe('restart'); // at the limit
    expect(planRestart([1, 2, 3, 4], 4, p)).toEqual({ action: 'give-up', exits: 4 }); // past it
  });

  it('forgets exits older than the window', () => {
    expect(planRestart([0, 1, 2, 10_002], 10_002, p)).toEqual({ action: 'restart', delayMs: 100 });
    expect(planRestart([0, 1, 2, 9_999], 9_999, p).action).toBe('give-up');
  });

  it('has defaults that tolerate a few crashes a minute', () => {
    expect(RESTART_POLICY).toEqual({ maxRestarts: 5, windowMs: 60_000, baseDelayMs: 100, capDelayMs: 5_000 });
  });
});

describe('worker accept mode and V8 flags (pure)', () => {
  it('outside a worker, listens as configured, unshared', () => {
    expect(listenOptions({ ...DEFAULTS, port: 1234 }, {})).toEqual({ port: 1234, reusePort: false, exclusive: false });
  });

  it('gives workers a 1 MB semi-space by default, the configured size, or V8\'s own with 0', () => {
    const off = { ...DEFAULTS, workerOptimizeForSize: false };
    expect(workerExecArgv(off, ['--import', 'tsx'])).toEqual(['--import', 'tsx', '--max-semi-space-size=1']);
    expect(workerExecArgv({ ...off, workerSemiSpaceMb: 8 }, ['--max-semi-space-size=16'])).toEqual(['--max-semi-space-size=8']);
    expect(workerExecArgv({ ...off, workerSemiSpaceMb: 0 }, ['--max-semi-space-size=16'])).toEqual([]);
  });

  it('runs workers with --optimize-for-size by default, once, and without it when switched off', () => {
    expect(DEFAULTS.workerOptimizeForSize).toBe(true);
    expect(workerExecArgv({ ...DEFAULTS }, [])).toEqual(['--max-semi-space-size=1', '--optimize-for-size']);
    expect(workerExecArgv({ ...DEFAULTS }, ['--optimize-for-size'])).toEqual(['--max-semi-space-size=1', '--optimize-for-size']);
    expect(workerExecArgv({ ...DEFAULTS, workerOptimizeForSize: false }, ['--optimize-for-size'])).toEqual(['--max-semi-space-size=1']);
  });

  it('defaults to reuseport on Linux', () => {
    if (process.platform === 'linux') expect(DEFAULTS.workerAccept).toBe('reuseport');
    expect(CLUSTER_PORT_ENV).toBe('TIDINGS_CLUSTER_PORT');
  });
});

describe('tidings-server --workers', () => {
  const root = path.resolve(import.meta.dirname, '../..');
  const run = (args: string[], env: Record<string, string>) =>
    spawn(path.join(root, 'node_modules/.bin/tsx'), [path.join(root, 'server/main.ts'), ...args], {
      cwd: root,
      env: { PATH: `${path.join(root, 'node_modules/.bin')}:${process.env.PATH}`, TIDINGS_PORT: '0', TIDINGS_LOG_LEVEL: 'silent', TIDINGS_DRAIN_LISTEN_MS: '0', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group, so a failed test can kill tsx, the primary and the workers at once.
      detached: true,
    });
  /** SIGKILL the whole group: killing only tsx would orphan the primary and its workers. */
  const killAll = (child: ReturnType<typeof run>) => {
    try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* already gone */ }
  };
  /**
   * Worker processes: tsx (the spawned child) runs the primary, whose node:cluster
   * children are the workers. tsx's esbuild service, also a child of the primary
   * now and then, is not one.
   */
  const workers = (tsxPid: number): number[] => {
    const out = execFileSync('ps', ['-eo', 'pid=,ppid=,comm='], { encoding: 'utf8' });
    const rows = out.trim().split('\n').map((l) => {
      const [pid, ppid, comm] = l.trim().split(/\s+/);
      return { pid: Number(pid), ppid: Number(ppid), comm: comm ?? '' };
    });
    const children = (p: number) => rows.filter((r) => r.ppid === p);
    return children(tsxPid).flatMap((r) => children(r.pid)).filter((r) => r.comm !== 'esbuild').map((r) => r.pid);
  };

  it('replaces a worker that was killed and keeps serving on the same port', async () => {
    const redis = await startRedis();
    const child = run(['--workers', '2'], { TIDINGS_REDIS_URL: redis.url });
    try {
      let out = '';
      let err = '';
      child.stdout.on('data', (d) => { out += d; });
      child.stderr.on('data', (d) => { err += d; });
      await expect.poll(() => out.includes('listening on'), { timeout: 15_000 }).toBe(true);
      const port = Number(/listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out)![1]);
      await expect.poll(() => workers(child.pid!).length, { timeout: 5_000 }).toBe(2);
      const [victim] = workers(child.pid!);
      process.kill(victim!, 'SIGKILL');
      await expect.poll(() => err, { timeout: 5_000 }).toMatch(/worker \d+ exited \(SIGKILL\); starting another in 100 ms/);
      await expect.poll(() => { const w = workers(child.pid!); return w.length === 2 && !w.includes(victim!); }, { timeout: 15_000 }).toBe(true);
      for (let i = 0; i < 4; i++) expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
      expect(out.match(/listening on/g)).toHaveLength(1);
      child.kill('SIGTERM');
      const [code] = await once(child, 'exit');
      expect(code).toBe(0);
    } finally {
      killAll(child);
      await redis.stop();
    }
  }, 40_000);

  /** pid -> listening sockets on `port`, from ss(8). */
  const listeners = (port: number): number[] => {
    const out = execFileSync('ss', ['-Hltnp', `sport = :${port}`], { encoding: 'utf8' });
    return [...out.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1]));
  };

  it('with reuseport (default) each worker listens on its own socket; the primary holds none; workers get a 1 MB semi-space and --optimize-for-size', async () => {
    const redis = await startRedis();
    const child = run(['--workers', '2', '--port', '0'], { TIDINGS_REDIS_URL: redis.url });
    try {
      let out = '';
      child.stdout.on('data', (d) => { out += d; });
      await expect.poll(() => out.includes('listening on'), { timeout: 15_000 }).toBe(true);
      const port = Number(/listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out)![1]);
      const ws = workers(child.pid!);
      expect(ws).toHaveLength(2);
      expect(listeners(port).sort()).toEqual([...ws].sort());
      for (const pid of ws) {
        expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')).toContain('--max-semi-space-size=1');
        expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')).toContain('--optimize-for-size');
        expect(readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')).toContain('MALLOC_ARENA_MAX=2');
      }
      // Connections spread over both listeners; each one answers.
      for (let i = 0; i < 6; i++) expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
      child.kill('SIGTERM');
      const [code] = await once(child, 'exit');
      expect(code).toBe(0);
    } finally {
      killAll(child);
      await redis.stop();
    }
  }, 40_000);

  it('with TIDINGS_WORKER_ACCEPT=primary the primary owns the one listening socket (node:cluster hand-off)', async () => {
    const redis = await startRedis();
    const child = run(['--workers', '2'], { TIDINGS_REDIS_URL: redis.url, TIDINGS_WORKER_ACCEPT: 'primary' });
    try {
      let out = '';
      child.stdout.on('data', (d) => { out += d; });
      await expect.poll(() => out.includes('listening on'), { timeout: 15_000 }).toBe(true);
      const port = Number(/listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out)![1]);
      const ws = workers(child.pid!);
      const owners = listeners(port);
      expect(owners).toHaveLength(1);
      expect(ws).not.toContain(owners[0]);
      for (let i = 0; i < 4; i++) expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
    } finally {
      killAll(child);
      await redis.stop();
    }
  }, 40_000);

  it('gives up with exit 1 when workers keep dying (Redis unreachable)', async () => {
    // Port 1 on loopback: nothing listens there. A port found free a moment ago can be taken by a redis-server
    // another test file starts in parallel, and then the workers connect and never die (a 40 s hang seen once).
    const child = run(['--workers', '2'], { TIDINGS_REDIS_URL: 'redis://127.0.0.1:1' });
    let err = '';
    child.stderr.on('data', (d) => { err += d; });
    const [code] = await once(child, 'exit');
    expect(code).toBe(1);
    expect(err).toMatch(/cannot connect to Redis at redis:\/\/127\.0\.0\.1/);
    expect(err).toMatch(/6 workers exited within 60000 ms .*; giving up/);
  }, 40_000);
});
