// --workers N: N processes sharing one port. Workers share events through the
// Redis bus (config.ts refuses --workers > 1 without TIDINGS_REDIS_URL), and
// the primary gives them the same secrets so a token works on any of them.
//
// Accepting (TIDINGS_WORKER_ACCEPT): with `reuseport` (the default on Linux)
// every worker binds its own listening socket with SO_REUSEPORT and the kernel
// spreads new connections over them; the primary never touches a connection.
// With `primary` (node:cluster's default, the only choice where the OS lacks
// SO_REUSEPORT), the primary accepts each connection and passes the handle to a
// worker over IPC: measured at 100,000 connections that costs the primary
// ~0.3 ms of CPU per connection and serializes every accept through one core
// (bench/RESULTS.md "100,000 subscribers").
//
// This module is what the primary loads; it must stay light (no logger, no
// metrics, no Redis client): every MB here is paid once more per machine.
import cluster, { type Worker } from 'node:cluster';
import net from 'node:net';
import type { Config } from './config.js';

/** MALLOC_ARENA_MAX given to workers unless the operator set one (see runPrimary). */
export const WORKER_MALLOC_ARENAS = 2;

/** Env var through which the primary gives workers the port it picked for --port 0 (each worker would otherwise pick its own). */
export const CLUSTER_PORT_ENV = 'TIDINGS_CLUSTER_PORT';

/** Messages a worker sends to the primary. */
export type WorkerMessage = { type: 'tidings:listening'; host: string; port: number };

/**
 * When a dead worker is replaced. A worker that dies at start (Redis unreachable,
 * port taken) would otherwise be re-forked in a tight loop forever; instead each
 * restart waits longer, and past `maxRestarts` exits within `windowMs` the
 * primary stops everything and exits 1 so a supervisor sees the failure.
 */
export const RESTART_POLICY = {
  /** Unexpected worker exits tolerated within `windowMs`. @default 5 */
  maxRestarts: 5,
  /** @default 60000 */
  windowMs: 60_000,
  /** Delay before the first replacement; doubles per recent exit. @default 100 */
  baseDelayMs: 100,
  /** @default 5000 */
  capDelayMs: 5_000,
} as const;
export type RestartPolicy = { [K in keyof typeof RESTART_POLICY]: number };

export type RestartPlan = { action: 'restart'; delayMs: number } | { action: 'give-up'; exits: number };

/** Pure: given the times of recent unexpected exits (this one included), restart after a delay or give up. */
export function planRestart(exitTimes: readonly number[], now: number, policy: RestartPolicy = RESTART_POLICY): RestartPlan {
  const recent = exitTimes.filter((t) => now - t < policy.windowMs).length;
  if (recent > policy.maxRestarts) return { action: 'give-up', exits: recent };
  return { action: 'restart', delayMs: Math.min(policy.capDelayMs, policy.baseDelayMs * 2 ** Math.max(0, recent - 1)) };
}

export function isWorker(): boolean {
  return cluster.isWorker;
}

/**
 * How the gateway listens in this process: in a worker of a `reuseport`
 * cluster, on its own SO_REUSEPORT socket (`exclusive` keeps node:cluster from
 * routing the listen through the primary), on the port the primary fixed.
 */
export function listenOptions(config: Config, env: Record<string, string | undefined> = process.env): { port: number; reusePort: boolean; exclusive: boolean } {
  if (!cluster.isWorker || config.workerAccept !== 'reuseport') return { port: config.port, reusePort: false, exclusive: false };
  const fixed = env[CLUSTER_PORT_ENV];
  return { port: fixed ? Number(fixed) : config.port, reusePort: true, exclusive: true };
}

/**
 * V8 flags for workers: a small young generation (TIDINGS_WORKER_SEMI_SPACE_MB;
 * 0 keeps V8's default) and --optimize-for-size (TIDINGS_WORKER_OPTIMIZE_FOR_SIZE):
 * V8 then grows the old generation in small steps and compacts it, so the garbage
 * of a connect storm does not stay resident under idle connections. Measured
 * (bench/memory.mjs, 7,500 idle subscribers per worker, medians of 3): 2.4 KB
 * per connection instead of 3.9, for ~10% more worker CPU per connect.
 */
export function workerExecArgv(config: Config, parent: readonly string[] = process.execArgv): string[] {
  const own = parent.filter((a) => !a.startsWith('--max-semi-space-size') && a !== '--optimize-for-size' && a !== '--no-optimize-for-size');
  const out = config.workerSemiSpaceMb > 0 ? [...own, `--max-semi-space-size=${config.workerSemiSpaceMb}`] : own;
  return config.workerOptimizeForSize ? [...out, '--optimize-for-size'] : out;
}

/**
 * A free port for `--port 0` with SO_REUSEPORT workers. Found by binding and
 * closing; another process could take it in between, and the workers would
 * then fail to listen (EADDRINUSE, reported and retried by the restart policy).
 */
function pickPort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen({ port: 0, host, exclusive: true }, () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** In a worker: tell the primary we listen (it prints the one "listening on" line). */
export function reportListening(host: string, port: number): void {
  const msg: WorkerMessage = { type: 'tidings:listening', host, port };
  process.send?.(msg);
}

/**
 * The primary: fork `config.workers` workers, print `listening on` once all of
 * them listen, replace a worker that dies unexpectedly, and on SIGTERM/SIGINT
 * drain them all (SIGTERM to each) and exit 0; a second signal kills them.
 */
export async function runPrimary(config: Config, print: (line: string) => void, policy: RestartPolicy = RESTART_POLICY): Promise<void> {
  // Every worker must verify the same tokens and accept the same publisher keys: they
  // inherit the primary's environment (main.ts puts generated secrets there) and argv.
  const env: Record<string, string> = {};
  // glibc gives every thread that allocates its own malloc arena; a worker's
  // threads (libuv, V8 platform) then hold pages spread over up to 8 per core.
  // Two arenas measured at 100,000 subscribers: ~10 MB less per worker and a
  // quarter less memory per connection (bench/RESULTS.md). An operator's own
  // MALLOC_ARENA_MAX wins; other C libraries ignore it.
  if (process.env.MALLOC_ARENA_MAX === undefined) env.MALLOC_ARENA_MAX = String(WORKER_MALLOC_ARENAS);
  if (config.workerAccept === 'reuseport') {
    env[CLUSTER_PORT_ENV] = String(config.port === 0 ? await pickPort(config.host) : config.port);
  }
  cluster.setupPrimary({ execArgv: workerExecArgv(config) });
  let stopping = false;
  let failed = false;
  let exits: number[] = [];
  let announced = false;
  const listening = new Set<number>();

  const fork = (): Worker => {
    const w = cluster.fork(env);
    w.on('message', (m: WorkerMessage) => {
      if (m?.type !== 'tidings:listening') return;
      listening.add(w.id);
      if (!announced && listening.size >= config.workers) {
        announced = true;
        const shown = m.host.includes(':') ? `[${m.host}]` : m.host;
        print(`listening on http://${shown}:${m.port}`);
      }
    });
    return w;
  };

  cluster.on('exit', (w, code, signal) => {
    listening.delete(w.id);
    if (stopping) {
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(failed ? 1 : 0);
      return;
    }
    const now = Date.now();
    exits = [...exits.filter((t) => now - t < policy.windowMs), now];
    const plan = planRestart(exits, now, policy);
    if (plan.action === 'give-up') {
      process.stderr.write(`tidings-server: ${plan.exits} workers exited within ${policy.windowMs} ms (last: ${signal ?? code}); giving up\n`);
      stopping = true;
      failed = true;
      const left = Object.values(cluster.workers ?? {});
      if (left.length === 0) process.exit(1);
      for (const x of left) x?.process.kill('SIGTERM');
      return;
    }
    process.stderr.write(`tidings-server: worker ${w.process.pid} exited (${signal ?? code}); starting another in ${plan.delayMs} ms\n`);
    setTimeout(() => { if (!stopping) fork(); }, plan.delayMs);
  });

  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGKILL');
      process.exit(signal === 'SIGINT' ? 130 : 143);
    }
    stopping = true;
    const workers = Object.values(cluster.workers ?? {});
    if (workers.length === 0) process.exit(0);
    for (const w of workers) w?.process.kill('SIGTERM');
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  for (let i = 0; i < config.workers; i++) fork();
}
