// A real redis-server for tests: a free loopback port, a temp dir, no persistence
// (--save '' --appendonly no), so a restart loses the dataset like a crashed
// cache would. kill() and restart() let a test cut Redis away mid-stream.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestRedis {
  readonly port: number;
  readonly url: string;
  /** SIGKILL the server (no shutdown, no save); connections drop at once. */
  kill(): Promise<void>;
  /** Start it again on the same port (an empty dataset: nothing was persisted). */
  start(): Promise<void>;
  /** SIGSTOP: the process stays, its connections stay open, nothing is answered. */
  freeze(): void;
  /** SIGCONT after freeze(). */
  thaw(): void;
  /** kill() then start(). */
  restart(): Promise<void>;
  /** Stop for good and remove the temp dir. */
  stop(): Promise<void>;
}

/** Ask the kernel for a free port on loopback. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** The port was free when asked but another test file's redis-server took it before ours could bind. */
class PortTaken extends Error {}

/**
 * Resolve once the redis-server we spawned (process `pid`) answers on the port. Answering PING is not
 * enough: a port found free a moment ago can be taken by a redis-server another test file starts in
 * parallel; ours then fails to bind and the tests would share, kill and freeze the other one.
 */
async function waitForOurs(port: number, pid: number | undefined, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const who = await new Promise<number | null>((resolve) => {
      const s = connect(port, '127.0.0.1');
      let got = '';
      s.setTimeout(500, () => { s.destroy(); resolve(null); });
      s.on('error', () => resolve(null));
      s.on('connect', () => s.write('INFO server\r\n'));
      s.on('data', (d) => {
        got += d.toString();
        const m = /process_id:(\d+)/.exec(got);
        if (m || got.startsWith('-')) { s.destroy(); resolve(m ? Number(m[1]) : null); }
      });
    });
    if (who !== null && who === pid) return;
    if (who !== null) throw new PortTaken(`port ${port} is held by another redis-server (process ${who})`);
    if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not answer within ${timeoutMs} ms`);
    // Polling a process we just spawned: there is no event to wait on instead.
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function startRedis(): Promise<TestRedis> {
  let port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'tidings-redis-'));
  let child: ChildProcess | null = null;

  const start = async (): Promise<void> => {
    if (child) return;
    const p = spawn('redis-server', [
      '--port', String(port), '--bind', '127.0.0.1', '--dir', dir,
      '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--loglevel', 'warning',
    ], { stdio: ['ignore', 'ignore', 'inherit'] });
    child = p;
    const failed = new Promise<never>((_, reject) => {
      p.once('error', (err) => reject(new Error(`cannot start redis-server (is it installed? apt-get install redis-server): ${err.message}`)));
      p.once('exit', (code) => reject(new Error(`redis-server exited early with code ${code}`)));
    });
    failed.catch(() => {});
    await Promise.race([waitForOurs(port, p.pid, 10_000), failed]);
  };

  const kill = async (): Promise<void> => {
    const p = child;
    if (!p) return;
    child = null;
    if (p.exitCode !== null || p.signalCode !== null) return;
    await new Promise<void>((resolve) => { p.once('exit', () => resolve()); p.kill('SIGKILL'); });
  };

  for (let attempt = 1; ; attempt++) {
    try {
      await start();
      break;
    } catch (err) {
      await kill();
      // Ours exits at once when it cannot bind: the same race, seen from the other side.
      const raced = err instanceof PortTaken || /exited early/.test(String(err));
      if (!raced || attempt === 5) throw err;
      port = await freePort();
    }
  }
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    kill,
    start,
    restart: async () => { await kill(); await start(); },
    freeze: () => { child?.kill('SIGSTOP'); },
    thaw: () => { child?.kill('SIGCONT'); },
    stop: async () => { await kill(); rmSync(dir, { recursive: true, force: true }); },
  };
}
