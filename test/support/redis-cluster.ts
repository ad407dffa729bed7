// A real Redis Cluster for tests, from Debian's redis-server: N primaries with
// one replica each on free loopback ports, created with
// `redis-cli --cluster create ... --cluster-replicas 1 --cluster-yes`, no
// persistence, a short cluster-node-timeout so a failover takes about a second
// or two instead of 15+. Every process is killed by stop() (and is spawned in
// its own process group, killed whole, if the test process dies first).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { freePort } from './redis.js';

const run = promisify(execFile);

export interface ClusterNodeInfo {
  id: string;
  port: number;
  role: 'master' | 'slave';
  /** Primaries: the slot ranges they own. */
  slots: [number, number][];
  /** Replicas: their primary's id. */
  primaryId: string | null;
  failed: boolean;
}

export interface TestCluster {
  /** Seed list for TIDINGS_REDIS_CLUSTER. */
  readonly seeds: string[];
  readonly ports: number[];
  /** Parsed CLUSTER NODES as seen by a live node. */
  nodes(): Promise<ClusterNodeInfo[]>;
  /** Port of the primary owning `slot` (as a live node sees it). */
  ownerOf(slot: number): Promise<number>;
  /** A connection to one node (caller disconnects). */
  admin(port: number): Redis;
  /** SIGKILL one node (a primary dying without a word). */
  kill(port: number): Promise<void>;
  /** Start one more (empty) node and make it meet the cluster: a primary without slots until moveSlot gives it some. */
  addNode(): Promise<number>;
  /** CONFIG SET on every live node. */
  configAll(name: string, value: string): Promise<void>;
  /** SIGSTOP/SIGCONT one node (frozen: connections stay open, nothing is answered or replicated). */
  signal(port: number, sig: 'SIGSTOP' | 'SIGCONT'): void;
  /** Resolve once every live node sees cluster_state:ok, every slot's owner is alive, and live replicas are online. */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /**
   * Move one slot from its owner to the primary on `toPort`, keys and all, the
   * way redis-cli --cluster reshard does it: IMPORTING/MIGRATING, MIGRATE in
   * batches, then SETSLOT NODE on target, source and every other primary.
   */
  moveSlot(slot: number, toPort: number): Promise<void>;
  stop(): Promise<void>;
}

function parseNodes(text: string): ClusterNodeInfo[] {
  return text.trim().split('\n').map((line) => {
    const f = line.split(' ');
    const port = Number(/:(\d+)@/.exec(f[1]!)![1]);
    const flags = f[2]!.split(',');
    const slots: [number, number][] = [];
    for (const s of f.slice(8)) {
      if (s.startsWith('[')) continue; // migrating/importing markers
      const [a, b] = s.split('-');
      slots.push([Number(a), Number(b ?? a)]);
    }
    return {
      id: f[0]!, port, role: flags.includes('master') ? 'master' : 'slave', slots,
      primaryId: f[3] === '-' ? null : f[3]!, failed: flags.includes('fail') || flags.includes('fail?'),
    };
  });
}

export async function startCluster(opts: { primaries?: number; nodeTimeoutMs?: number } = {}): Promise<TestCluster> {
  const count = (opts.primaries ?? 3) * 2;
  const nodeTimeout = opts.nodeTimeoutMs ?? 1_000;
  const dir = mkdtempSync(join(tmpdir(), 'tidings-cluster-'));
  const ports: number[] = [];
  while (ports.length < count) {
    const p = await freePort();
    // The cluster bus listens on port + 10000: both must be free and below 65536.
    if (p + 10_000 < 65_536 && !ports.includes(p)) ports.push(p);
  }
  const procs = new Map<number, ChildProcess>();
  const alive = new Set<number>();
  const spawnNode = (port: number): void => {
    const p = spawn('redis-server', [
      '--port', String(port), '--bind', '127.0.0.1', '--dir', dir,
      '--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`,
      '--cluster-node-timeout', String(nodeTimeout),
      // Replicas sync at once (the default waits 5 s for more replicas to join a diskless sync).
      '--repl-diskless-sync-delay', '0',
      '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--loglevel', 'warning',
    ], { stdio: ['ignore', 'ignore', 'inherit'], detached: true });
    p.once('error', () => {});
    procs.set(port, p);
    alive.add(port);
  };
  for (const port of ports) spawnNode(port);
  const stop = async (): Promise<void> => {
    await Promise.all([...procs.entries()].map(([port, p]) => new Promise<void>((resolve) => {
      if (p.exitCode !== null || p.signalCode !== null) return resolve();
      p.once('exit', () => resolve());
      try { process.kill(-p.pid!, 'SIGKILL'); } catch { p.kill('SIGKILL'); }
      alive.delete(port);
    })));
    rmSync(dir, { recursive: true, force: true });
  };
  const admin = (port: number) => {
    // A bounded wait: a node that never answers (frozen, starved) fails the test with an error instead of hanging it.
    const r = new Redis({ port, host: '127.0.0.1', lazyConnect: false, maxRetriesPerRequest: 1, retryStrategy: () => null, commandTimeout: 10_000 });
    r.on('error', () => {});
    return r;
  };
  const ask = async <T>(port: number, f: (r: Redis) => Promise<T>): Promise<T> => {
    const r = admin(port);
    try { return await f(r); } finally { r.disconnect(); }
  };
  try {
    // Wait for every server to answer.
    const deadline = Date.now() + 15_000;
    for (const port of ports) {
      for (;;) {
        const ok = await ask(port, (r) => r.ping()).then(() => true, () => false);
        if (ok) break;
        if (Date.now() > deadline) throw new Error(`redis-server on ${port} did not start (is redis-server installed?)`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    await run('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '1', '--cluster-yes'], { timeout: 30_000 });
  } catch (err) {
    await stop();
    throw err;
  }

  const livePort = () => [...alive][0]!;
  const nodes = async () => parseNodes(await ask(livePort(), (r) => r.call('CLUSTER', 'NODES') as Promise<string>));
  const ownerOf = async (slot: number) => {
    const n = (await nodes()).find((x) => x.role === 'master' && !x.failed && x.slots.some(([a, b]) => slot >= a && slot <= b));
    if (!n) throw new Error(`no live primary owns slot ${slot}`);
    return n.port;
  };
  /** Every live replica is online at its primary (ROLE lists it): a WAIT can count it. */
  const replicated = async (ns: ClusterNodeInfo[]): Promise<boolean> => {
    for (const m of ns.filter((x) => x.role === 'master' && alive.has(x.port) && !x.failed)) {
      const want = ns.filter((x) => x.role === 'slave' && x.primaryId === m.id && alive.has(x.port)).map((x) => x.port);
      if (want.length === 0) continue;
      const role = await ask(m.port, (r) => r.call('ROLE') as Promise<[string, number, [string, string, string][]]>).catch(() => null);
      const online = new Set((role?.[2] ?? []).map((x) => Number(x[1])));
      if (!want.every((p) => online.has(p))) return false;
    }
    return true;
  };
  const waitHealthy = async (timeoutMs = 20_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const states = await Promise.all([...alive].map((port) => ask(port, (r) => r.call('CLUSTER', 'INFO') as Promise<string>).catch(() => '')));
      const ok = states.every((s) => /cluster_state:ok/.test(s) && /cluster_slots_ok:16384/.test(s));
      if (ok) {
        const ns = await nodes();
        const owners = ns.filter((x) => x.role === 'master' && x.slots.length > 0);
        if (owners.every((x) => alive.has(x.port) && !x.failed) && await replicated(ns)) return;
      }
      if (Date.now() > deadline) throw new Error('cluster did not become healthy');
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  await waitHealthy();

  return {
    seeds: ports.map((p) => `127.0.0.1:${p}`),
    ports,
    nodes,
    ownerOf,
    admin,
    kill: async (port) => {
      const p = procs.get(port)!;
      alive.delete(port);
      if (p.exitCode !== null || p.signalCode !== null) return;
      await new Promise<void>((resolve) => { p.once('exit', () => resolve()); p.kill('SIGKILL'); });
    },
    signal: (port, sig) => { procs.get(port)!.kill(sig); },
    addNode: async () => {
      let port = 0;
      while (port === 0 || port + 10_000 >= 65_536 || procs.has(port)) port = await freePort();
      spawnNode(port);
      const deadline = Date.now() + 15_000;
      while (!(await ask(port, (r) => r.ping()).then(() => true, () => false))) {
        if (Date.now() > deadline) throw new Error(`redis-server on ${port} did not start`);
        await new Promise((r) => setTimeout(r, 50));
      }
      await ask(livePort(), (r) => r.call('CLUSTER', 'MEET', '127.0.0.1', String(port)));
      // Known to every live node, and knowing them all.
      for (;;) {
        const views = await Promise.all([...alive].map((p) => ask(p, (r) => r.call('CLUSTER', 'NODES') as Promise<string>).catch(() => '')));
        const state = await ask(port, (r) => r.call('CLUSTER', 'INFO') as Promise<string>).catch(() => '');
        if (/cluster_state:ok/.test(state) && views.every((v) => v.includes(`:${port}@`) && v.trim().split('\n').length === procs.size)) break;
        if (Date.now() > deadline) throw new Error(`node ${port} did not join the cluster`);
        await new Promise((r) => setTimeout(r, 100));
      }
      return port;
    },
    configAll: async (name, value) => {
      // A frozen node (SIGSTOP) does not answer: it keeps its value.
      await Promise.all([...alive].map((port) => ask(port, (r) => r.config('SET', name, value)).catch(() => {})));
    },
    waitHealthy,
    moveSlot: async (slot, toPort) => {
      // A node's view of who is primary can lag a recent failover: wait until both
      // ends say themselves what they are (ROLE), so SETSLOT goes to primaries.
      const deadline = Date.now() + 15_000;
      for (;;) {
        const fromNow = await ownerOf(slot);
        const roles = await Promise.all([fromNow, toPort].map((p) => ask(p, (r) => r.call('ROLE') as Promise<unknown[]>).catch(() => ['?'])));
        if (roles.every((r) => r[0] === 'master')) break;
        if (Date.now() > deadline) throw new Error(`slot ${slot}: ${fromNow} or ${toPort} is not a primary`);
        await new Promise((r) => setTimeout(r, 200));
      }
      const ns = await nodes();
      const fromPort = await ownerOf(slot);
      if (fromPort === toPort) return;
      const from = ns.find((x) => x.port === fromPort)!;
      const to = ns.find((x) => x.port === toPort)!;
      const src = admin(fromPort);
      const dst = admin(toPort);
      try {
        await dst.call('CLUSTER', 'SETSLOT', String(slot), 'IMPORTING', from.id);
        await src.call('CLUSTER', 'SETSLOT', String(slot), 'MIGRATING', to.id);
        for (;;) {
          const keys = (await src.call('CLUSTER', 'GETKEYSINSLOT', String(slot), '10')) as string[];
          if (keys.length === 0) break;
          await src.call('MIGRATE', '127.0.0.1', String(toPort), '', '0', '5000', 'KEYS', ...keys);
        }
        await dst.call('CLUSTER', 'SETSLOT', String(slot), 'NODE', to.id);
        await src.call('CLUSTER', 'SETSLOT', String(slot), 'NODE', to.id).catch((err: Error) => {
          // A primary that gave away its last slot turns into a replica of the receiver
          // (cluster-allow-replica-migration) as soon as it hears of it: nothing left to set.
          if (!/only with masters/.test(err.message)) throw err;
        });
        for (const n of ns) {
          if (n.role !== 'master' || n.port === fromPort || n.port === toPort || !alive.has(n.port)) continue;
          await ask(n.port, (r) => r.call('CLUSTER', 'SETSLOT', String(slot), 'NODE', to.id)).catch(() => {});
        }
      } finally {
        src.disconnect();
        dst.disconnect();
      }
    },
    stop,
  };
}
