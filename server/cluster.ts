// --workers N: N processes sharing one port through node:cluster (the primary
// accepts and hands sockets round-robin). Workers share events through the
// Redis bus (config.ts refuses --workers > 1 without TIDINGS_REDIS_URL), and
// the primary gives them the same secrets so a token works on any of them.
import cluster, { type Worker } from 'node:cluster';
import type { Config } from './config.js';

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
export function runPrimary(config: Config, print: (line: string) => void, policy: RestartPolicy = RESTART_POLICY): void {
  // Every worker must verify the same tokens and accept the same publisher key.
  const env = { TIDINGS_SUBSCRIBER_SECRET: config.subscriberSecret, TIDINGS_PUBLISHER_KEY: config.publisherKey };
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
