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

/** Resolve once something accepts TCP on the port and answers PING with +PONG. */
async function waitForPong(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.setTimeout(500, () => { s.destroy(); resolve(false); });
      s.on('error', () => resolve(false));
      s.on('connect', () => s.write('PING\r\n'));
      s.on('data', (d) => { s.destroy(); resolve(d.toString().startsWith('+PONG')); });
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not answer PING within ${timeoutMs} ms`);
    // Polling a process we just spawned: there is no event to wait on instead.
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function startRedis(): Promise<TestRedis> {
  const port = await freePort();
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
    await Promise.race([waitForPong(port, 10_000), failed]);
  };

  const kill = async (): Promise<void> => {
    const p = child;
    if (!p) return;
    child = null;
    if (p.exitCode !== null || p.signalCode !== null) return;
    await new Promise<void>((resolve) => { p.once('exit', () => resolve()); p.kill('SIGKILL'); });
  };

  await start();
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
