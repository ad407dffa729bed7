// --workers N: N processes sharing one port through node:cluster (the primary
// accepts and hands sockets round-robin). Workers share events through the
// Redis bus (config.ts refuses --workers > 1 without TIDINGS_REDIS_URL), and
// the primary gives them the same secrets so a token works on any of them.
import cluster, { type Worker } from 'node:cluster';
import type { Config } from './config.js';

/** Messages a worker sends to the primary. */
export type WorkerMessage = { type: 'tidings:listening'; host: string; port: number };

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
export function runPrimary(config: Config, print: (line: string) => void): void {
  // Every worker must verify the same tokens and accept the same publisher key.
  const env = { TIDINGS_SUBSCRIBER_SECRET: config.subscriberSecret, TIDINGS_PUBLISHER_KEY: config.publisherKey };
  let stopping = false;
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
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
      return;
    }
    process.stderr.write(`tidings-server: worker ${w.process.pid} exited (${signal ?? code}); starting another\n`);
    fork();
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
