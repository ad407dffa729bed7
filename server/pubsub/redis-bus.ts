// The bus for several nodes: Redis Streams as history, sharded Pub/Sub as live
// delivery, on one Redis (TIDINGS_REDIS_URL) or a Redis Cluster
// (TIDINGS_REDIS_CLUSTER).
//
// Commands (FCALL of the `tidings` library, redis-scripts.ts) go through one
// ioredis client (a Redis, or a Cluster routing by slot). Live events arrive on
// our own subscriber connections, one per node that owns a watched channel
// (redis-shard.ts): a channel is SSUBSCRIBEd while at least one local client
// watches it and SUNSUBSCRIBEd at zero, so a channel nobody here listens to
// costs this node nothing.
//
// Per watched channel the bus delivers to `onEvent` one ordered sequence with
// no gap and no duplicate, starting at the channel's head read just after the
// SSUBSCRIBE took effect. Whenever live delivery may have been cut (connection
// dropped, failover, slot moved) the channel goes back to `syncing`: it is
// resubscribed where its slot lives now, and catches up from the last ID it
// delivered (tidings_read) or, when continuity cannot be proven, calls `onGap`
// so the hub sends `reset` (PROTOCOL.md "No silent loss").
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import calculateSlot from 'cluster-key-slot';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { BusUnavailableError, type Bus, type Replay, type StoredEvent } from './bus.js';
import { LiveBarrier } from './live-barrier.js';
import { LIBRARY, channelOfLiveKey, compareCursors, epochKey, liveKey, parseCursor, streamKey } from './redis-scripts.js';
import { Shard } from './redis-shard.js';
import { parseSeed } from './seeds.js';

// publish/head/readAfter throw BusUnavailableError (code BUS_UNAVAILABLE, with
// retryAfterS) while Redis is unreachable: the HTTP side answers 503 + Retry-After.
export { BusUnavailableError };

/** Tunables of the Redis connections, each with its default and why. */
export interface RedisBusOptions {
  /** A command that gets no answer within this is failed (503) rather than left hanging a caller. @default 2000 */
  commandTimeoutMs: number;
  /**
   * A publish not stored (and, on a cluster, acknowledged by a replica) within
   * this answers 503 (config.publishTimeoutMs). ioredis' retries during a
   * failover can hold a command for seconds; the publisher hears within this.
   * @default 2000
   */
  publishTimeoutMs: number;
  /** First reconnect delay; doubles per failed attempt (full jitter). @default 100 */
  backoffBaseMs: number;
  /** Cap of the reconnect delay, so a restarted Redis is found within seconds. @default 3000 */
  backoffCapMs: number;
  /** Channels per SSUBSCRIBE command when resubscribing after a reconnect. @default 1000 */
  subscribeChunk: number;
  /**
   * Most channels whose heads one `FCALL tidings_heads` reads when a batch of
   * new watches starts (a connect storm of per-user channels): one call per
   * this many instead of one per channel. Bounded because Redis runs a call
   * to the end before anything else (~10 µs of Redis per channel: 256 keep a
   * publish waiting behind it for a few ms at most). On a cluster a call holds
   * the channels of one slot only. @default 256
   */
  headBatch: number;
  /**
   * New watches start (one SSUBSCRIBE and one head read per batch) at most
   * once per this many ms (config.redisWatchGatherMs); the channels watched
   * meanwhile wait and go together. A node that was idle starts at once. In a
   * connect storm of per-user channels a batch otherwise held the one or two
   * channels that arrived during the previous round trip, and each round trip
   * costs the node ~75-140 µs of CPU whatever it carries: 25 ms took a
   * worker's CPU per connect from ~480 to ~330 µs and Redis' from ~50 to
   * ~25 µs (bench/NOTES.md), for at most 25 ms more before a new channel's
   * `welcome`. @default 25
   */
  watchGatherMs: number;
  /**
   * After a channel is resubscribed (reconnect, failover, slot moved), the node
   * publishes a probe on it and must hear it on its own subscription within
   * this; otherwise the subscription is treated as deaf and redone (see
   * docs/decisions.md "Cluster: a resubscription is bound to its connection"). @default 3000
   */
  probeTimeoutMs: number;
  /** Random source for the backoff jitter (tests pass a seeded one). @default Math.random */
  random: () => number;
}

export const REDIS_BUS_DEFAULTS: RedisBusOptions = {
  commandTimeoutMs: 2_000,
  publishTimeoutMs: 2_000,
  backoffBaseMs: 100,
  backoffCapMs: 3_000,
  subscribeChunk: 1_000,
  headBatch: 256,
  watchGatherMs: 25,
  probeTimeoutMs: 3_000,
  random: Math.random,
};

/**
 * Pure: the delay before reconnect attempt `attempt` (1-based), "full jitter"
 * exponential backoff (AWS Architecture Blog, "Exponential Backoff And Jitter"):
 * uniform in [base/2, min(cap, base * 2^(attempt-1))], never zero so a dead
 * Redis is never hammered in a tight loop.
 */
export function reconnectDelay(attempt: number, base: number, cap: number, random: () => number): number {
  const ceiling = Math.min(cap, base * 2 ** Math.min(Math.max(attempt - 1, 0), 30));
  const floor = Math.min(base / 2, ceiling);
  return Math.round(floor + random() * (ceiling - floor));
}

/**
 * Pure: what a failed publish command means. `redirect`/`retry`: Redis refused
 * before running it (MOVED, ASK, TRYAGAIN, CLUSTERDOWN, LOADING, MASTERDOWN),
 * so sending it again cannot store the event twice. `refused`: a stable error
 * of the library (BADCHANNEL...). `unknown`: the connection failed or timed
 * out; the event may or may not be stored, so it is never sent again (503).
 */
export function classifyPublishError(err: unknown): 'moved' | 'ask' | 'retry' | 'noscript' | 'refused' | 'unknown' {
  const name = (err as { name?: string } | null)?.name;
  const msg = String((err as { message?: string } | null)?.message ?? err);
  if (name !== 'ReplyError') return 'unknown';
  if (/^MOVED /.test(msg)) return 'moved';
  if (/^ASK /.test(msg)) return 'ask';
  if (/^(TRYAGAIN|CLUSTERDOWN|LOADING|MASTERDOWN|BUSY)\b/.test(msg)) return 'retry';
  if (/Function not found/i.test(msg)) return 'noscript';
  if (/^(BADCHANNEL|BADJSON|BADHISTORY|BADTTL|BADKEY)\b/.test(msg)) return 'refused';
  return 'unknown';
}

/** A watched channel. `syncing`: (re)subscribe or catch-up pending, live messages buffered. */
interface Watch {
  phase: 'syncing' | 'live';
  refs: number;
  /** Last cursor delivered to onEvent (or the starting head); null before the first sync. */
  last: string | null;
  /** Live messages buffered while syncing; null while there are none (most channels, most of the time). */
  pending: [string, string][] | null;
  /** head/readAfter calls waiting for the channel to go live; null while there are none. */
  waiters: Waiter[] | null;
  /** Bumped by every sync attempt; an older attempt finding a newer one gives up. */
  gen: number;
  /**
   * The sync in flight, if any. Only an attempt on the channel's current Shard
   * and connection incarnation may make it live; reconcile waits for such an
   * attempt and replaces any other (a stale one finishes without effect).
   */
  attempt: Attempt | null;
  /** Cluster: the hash slot of the channel's keys (0 on a single Redis, where nothing routes by slot). */
  readonly slot: number;
  /** The subscriber connection this channel is placed on (its node owns the slot), or null while unplaced. */
  shard: Shard | null;
}
/** `until`: past this (Date.now()), the waiter is failed by the sweep (see whenLive). */
interface Waiter { resolve(): void; reject(err: Error): void; readonly until: number }
/** One sync: the Shard it subscribed on, and which of that Shard's connections (incarnation). */
interface Attempt { readonly shard: Shard; readonly incarnation: number }
/** A probe in flight: the channels it vouches for once heard on `attempt`'s connection. */
interface Probe { readonly attempt: Attempt; readonly channels: string[]; readonly timer: NodeJS.Timeout; readonly at: number }

/**
 * Live payloads starting with this are probes, not events: `~<nonce> null`.
 * Older nodes drop them as "not after the last cursor" (`~` is no cursor).
 */
const PROBE_MARK = '~';

/** True for errors that mean "Redis is not there" rather than "Redis said no". */
function isOutage(err: unknown): boolean {
  if (err instanceof BusUnavailableError) return true;
  const c = classifyPublishError(err);
  return c !== 'refused' && c !== 'noscript';
}

/** How often waiters of channels not live yet are checked against their deadline (at most; commandTimeoutMs if smaller). */
const WAITER_SWEEP_MS = 100;
const NO_WAITERS: readonly Waiter[] = Object.freeze([]);

/** How long a primary's replica count (ROLE) is trusted before it is asked again. */
const REPLICA_COUNT_TTL_MS = 1_000;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Where to connect: one Redis URL, or cluster seed nodes. */
export type RedisTarget = { url: string } | { cluster: string[] };

export class RedisBus implements Bus {
  onEvent: ((event: StoredEvent) => void) | null = null;
  onGap: ((channel: string, head: string) => void) | null = null;

  private readonly watches = new Map<string, Watch>();
  /** Subscribers waiting for the live feed to reach their replay's end (Bus.settled). */
  private readonly barrier = new LiveBarrier((a, b) => this.isAfter(a, b));
  private readonly shards = new Map<string, Shard>();
  private readonly history: string;
  private readonly ttl: string;
  private readonly opts: RedisBusOptions;
  /** Resolves once the library is loaded (single Redis: on the command connection). */
  private loaded: Promise<void> = Promise.resolve();
  /** Cluster: primaries (host:port) the library was loaded on by this node. */
  private readonly loadedOn = new Set<string>();
  private attempts = 0;
  private closed = false;
  /** Outage bookkeeping for logs: warn once per outage, not per retry. */
  private down = false;
  private reconcileTimer: NodeJS.Timeout | null = null;
  /** Channels watched since the last flush: their SSUBSCRIBEs leave together (see watch()). */
  private toSync: string[] = [];
  /** A batch of new watches is being subscribed and its heads read: the next waits for it (see watch()). */
  private flushing = false;
  private readonly flushSoon = (): void => this.flushWatches();
  /** The next batch's start, when one is scheduled (an immediate, or a timer while gathering). */
  private flushImmediate: NodeJS.Immediate | null = null;
  private flushTimer: NodeJS.Timeout | null = null;
  private lastFlushAt = 0;
  private reconcileAttempts = 0;
  /** Channels with head/readAfter waiters, and the one timer that fails those past their deadline. */
  private readonly waiting = new Set<Watch>();
  private waiterSweep: NodeJS.Timeout | null = null;
  private reconciling = false;
  /** Probes published and not heard back yet, by nonce. */
  private readonly probes = new Map<string, Probe>();
  /** Makes this node's probe nonces its own (other nodes hear them too, and ignore them). */
  private readonly probeId = Math.floor(Math.random() * 36 ** 8).toString(36);
  private probeSeq = 0;

  private constructor(
    /** Commands: a Redis (single) or a Cluster (routes by slot, follows MOVED/ASK). */
    private readonly cmd: Redis | Cluster,
    /** Options for subscriber connections (credentials, timeouts). */
    private readonly subOptions: RedisOptions,
    /** Single Redis: where the one subscriber connection goes. */
    private readonly single: RedisOptions | null,
    config: Config,
    private readonly log: Logger,
    opts: RedisBusOptions,
  ) {
    this.history = String(config.history);
    this.ttl = String(config.historyTtlS);
    this.opts = opts;
    cmd.on('error', (err: Error) => this.onConnError('command', err));
    if (cmd instanceof Cluster) {
      cmd.on('node error', (err: Error, key: string) => this.log.debug({ err: err.message, node: key }, 'redis cluster node error'));
      // New primaries (failover, resharding onto a new node) get the library; placements follow the slots.
      cmd.on('refresh', () => { this.loadOnNewPrimaries(); this.reconcileSoon(0); });
      // A node that comes back (restarted, maybe empty) gets the library again.
      cmd.on('-node', (redis: Redis) => { this.loadedOn.delete(nodeKey(redis)); this.replicaCounts.delete(nodeKey(redis)); });
    } else {
      cmd.on('close', () => this.onConnClose());
      cmd.on('ready', () => {
        this.loaded = this.loadLibrary(cmd);
        // Channels left syncing while only the command connection was down resume here.
        this.loaded.then(() => this.reconcileSoon(0), () => {});
        this.onConnReady();
      });
    }
  }

  /** Connect to a single Redis and load the library; rejects with a clear error if Redis is unreachable. */
  static async connect(url: string, config: Config, log: Logger, options: Partial<RedisBusOptions> = {}): Promise<RedisBus> {
    return RedisBus.open({ url }, config, log, options);
  }

  /** Connect as config says (TIDINGS_REDIS_URL or TIDINGS_REDIS_CLUSTER). */
  static async fromConfig(config: Config, log: Logger, options: Partial<RedisBusOptions> = {}): Promise<RedisBus> {
    const target: RedisTarget = config.redisCluster.length > 0 ? { cluster: config.redisCluster } : { url: config.redisUrl };
    return RedisBus.open(target, config, log, { publishTimeoutMs: config.publishTimeoutMs, watchGatherMs: config.redisWatchGatherMs, ...options });
  }

  static async open(target: RedisTarget, config: Config, log: Logger, options: Partial<RedisBusOptions> = {}): Promise<RedisBus> {
    const opts = { ...REDIS_BUS_DEFAULTS, ...options };
    let bus: RedisBus | null = null;
    const retryStrategy = (times: number) => (bus && bus.closed ? null : reconnectDelay(times, opts.backoffBaseMs, opts.backoffCapMs, opts.random));
    const common: RedisOptions = { commandTimeout: opts.commandTimeoutMs, retryStrategy };
    let where: string;
    if ('url' in target) {
      where = `Redis at ${redact(target.url)}`;
      const cmd = new Redis(target.url, {
        ...common, lazyConnect: true, connectionName: 'tidings-cmd',
        // Auto-pipelining: the head reads of a burst of new subscribers (and the
        // publishes of a burst) leave in one write instead of one each.
        enableAutoPipelining: true,
        // Fail fast while disconnected (publish -> 503) instead of queueing unboundedly.
        enableOfflineQueue: false, maxRetriesPerRequest: 0,
      });
      const single = { ...(cmd.options as RedisOptions), connectionName: 'tidings-sub' };
      bus = new RedisBus(cmd, { ...common, connectionName: 'tidings-sub' }, single, config, log, opts);
      try {
        await cmd.connect();
        if (cmd.status !== 'ready') await new Promise((resolve) => cmd.once('ready', resolve));
        const main = bus.shardFor('main');
        main.start();
        if (!main.ready) await new Promise((resolve, reject) => { main.conn.once('ready', resolve); main.conn.once('end', () => reject(new Error('subscriber connection ended'))); });
        await bus.loaded;
      } catch (err) {
        await bus.close();
        throw new Error(`cannot connect to ${where}: ${(err as Error).message}`);
      }
      return bus;
    }
    const seeds = target.cluster.map(parseSeed);
    where = `Redis Cluster at ${seeds.map((s) => `${s.host}:${s.port}`).join(',')}`;
    const auth: RedisOptions = {};
    if (seeds[0]!.username) auth.username = seeds[0]!.username;
    if (seeds[0]!.password !== undefined) auth.password = seeds[0]!.password;
    if (seeds[0]!.tls) auth.tls = {};
    const cluster = new Cluster(seeds.map((s) => ({ host: s.host, port: s.port })), {
      lazyConnect: true,
      scaleReads: 'master',
      // A cluster that cannot be reached at all is retried with our backoff, forever (until close).
      clusterRetryStrategy: (times: number) => (bus && bus.closed ? null : reconnectDelay(times, opts.backoffBaseMs, opts.backoffCapMs, opts.random)),
      retryDelayOnFailover: 100,
      retryDelayOnClusterDown: 100,
      retryDelayOnTryAgain: 100,
      slotsRefreshTimeout: 1_000,
      // Without it ioredis looks at the topology only on errors; a moved slot whose
      // SUNSUBSCRIBE we missed is then found within this.
      slotsRefreshInterval: 5_000,
      enableAutoPipelining: true,
      redisOptions: { ...auth, commandTimeout: opts.commandTimeoutMs, connectionName: 'tidings-cmd' },
    });
    bus = new RedisBus(cluster, { ...auth, ...common, connectionName: 'tidings-sub' }, null, config, log, opts);
    try {
      await cluster.connect();
      if (cluster.status !== 'ready') await new Promise((resolve) => cluster.once('ready', resolve));
      // A primary that cannot take the library now gets it on first use (Function not found).
      const masters = cluster.nodes('master');
      const loads = await Promise.allSettled(masters.map((m) => bus!.loadOnPrimaries([m])));
      const failed = loads.filter((r) => r.status === 'rejected');
      if (failed.length === masters.length) throw (failed[0] as PromiseRejectedResult | undefined)?.reason ?? new Error('no primary');
      if (failed.length) log.warn({ failed: failed.length, primaries: masters.length }, 'redis cluster: library not loaded on every primary yet; loaded on first use');
    } catch (err) {
      await bus.close();
      throw new Error(`cannot connect to ${where}: ${(err as Error).message}`);
    }
    return bus;
  }

  // ---- Bus ----------------------------------------------------------------

  async publish(events: { channel: string; json: string }[]): Promise<string[]> {
    if (events.length === 0) return [];
    return this.withDeadline(this.opts.publishTimeoutMs, 'publish', () =>
      this.cmd instanceof Cluster ? this.publishCluster(this.cmd, events) : this.publishSingle(events));
  }

  async head(channel: string): Promise<string> {
    const w = this.watches.get(channel);
    // A live channel's last delivered cursor is a valid head: every event after
    // it reaches onEvent (and so the hub's subscribers) from now on. No round trip.
    if (w && w.phase === 'live' && w.last !== null) return w.last;
    await this.whenLive(channel);
    const again = this.watches.get(channel);
    if (again && again.phase === 'live' && again.last !== null) return again.last;
    return (await this.fcall('tidings_head', channel, this.ttl)) as string;
  }

  async readAfter(channel: string, cursor: string): Promise<Replay> {
    await this.whenLive(channel);
    const w = this.watches.get(channel);
    // Nothing after what this node delivered last: answered without a round trip.
    if (w && w.phase === 'live' && w.last === cursor) return { kind: 'events', events: [] };
    return this.read(channel, cursor);
  }

  /** Bus.settled: resolves once the live feed of `channel` has delivered `cursor` (see live-barrier.ts). */
  settled(channel: string, cursor: string): Promise<void> | null {
    const w = this.watches.get(channel);
    if (!w) return null;
    return this.barrier.wait(channel, cursor, w.phase === 'live' ? w.last : null);
  }

  isAfter(a: string, b: string): boolean {
    const pa = parseCursor(a);
    const pb = parseCursor(b);
    if (!pa) return false;
    if (!pb) return true; // anything of ours follows a cursor that is not ours
    return compareCursors(pa, pb) > 0;
  }

  watch(channel: string): void {
    const w = this.watches.get(channel);
    if (w) { w.refs++; return; }
    const fresh: Watch = {
      phase: 'syncing', refs: 1, last: null, pending: null, waiters: null, gen: 0, attempt: null,
      // Only a cluster routes by slot (CRC16 of the key: a few µs per new channel otherwise spent for nothing).
      slot: this.cmd instanceof Cluster ? calculateSlot(liveKey(channel)) : 0, shard: null,
    };
    this.watches.set(channel, fresh);
    const owner = this.ownerOf(fresh.slot);
    if (owner === null) { this.reconcileSoon(); return; }
    const shard = this.place(channel, fresh, owner);
    if (!shard.ready) { shard.start(); return; } // its 'ready' syncs every channel placed on it
    // Channels watched in one turn of the event loop (a connect storm) share
    // their SSUBSCRIBE commands (one per slot on a cluster, one in all on a
    // single Redis) and their head reads leave in one write. While one batch
    // is in flight the next one gathers: under a storm of new per-user
    // channels, each batch carries what arrived during the previous one's round
    // trips instead of one channel each. A round trip to Redis costs a node
    // ~75-140 µs of CPU alone, ~20 µs per command in batches of 20 (measured
    // with ioredis here), and two of them per new channel were half of what a
    // per-user subscriber cost a worker to connect (bench/NOTES.md). An idle
    // node's first watch still leaves at once.
    if (this.toSync.push(channel) === 1 && !this.flushing) this.scheduleFlush();
  }

  /** The next batch starts watchGatherMs after the previous one started, or at once (next turn) if that is past. */
  private scheduleFlush(): void {
    if (this.flushTimer !== null || this.flushImmediate !== null || this.closed) return;
    const wait = this.lastFlushAt + this.opts.watchGatherMs - Date.now();
    if (wait <= 0) this.flushImmediate = setImmediate(this.flushSoon);
    else this.flushTimer = setTimeout(this.flushSoon, wait);
  }

  private flushWatches(): void {
    this.flushTimer = null;
    this.flushImmediate = null;
    if (this.flushing || this.closed) return;
    this.lastFlushAt = Date.now();
    const byShard = new Map<Shard, string[]>();
    for (const ch of new Set(this.toSync)) {
      const w = this.watches.get(ch);
      if (!w || w.phase !== 'syncing' || w.shard === null || this.attemptAlive(w)) continue;
      const shard = w.shard;
      if (!shard.ready) continue; // its 'ready' or reconcile syncs it
      const l = byShard.get(shard);
      if (l) l.push(ch); else byShard.set(shard, [ch]);
    }
    this.toSync = [];
    if (byShard.size === 0) return;
    this.flushing = true;
    let inFlight = true;
    const next = () => {
      if (!inFlight) return;
      inFlight = false;
      clearTimeout(guard);
      this.flushing = false;
      if (this.toSync.length > 0) this.scheduleFlush();
    };
    // Every command of a sync has its deadline; this one only makes sure that a
    // batch which never settles cannot hold back the next ones.
    const guard = setTimeout(next, 2 * this.opts.commandTimeoutMs);
    void Promise.all([...byShard].map(([shard, chs]) => this.sync(shard, chs))).finally(next);
  }

  unwatch(channel: string): void {
    const w = this.watches.get(channel);
    if (!w) return;
    if (--w.refs > 0) return;
    this.watches.delete(channel);
    for (const x of this.takeWaiters(w)) x.reject(new BusUnavailableError(`unwatched ${channel}`, 1));
    this.barrier.releaseAll(channel);
    const shard = w.shard;
    if (!shard) return;
    shard.channels.delete(channel);
    if (shard.ready) shard.conn.sunsubscribe(liveKey(channel)).catch((err) => this.log.debug({ err }, 'redis sunsubscribe failed'));
    this.dropIfIdle(shard);
  }

  /**
   * Single Redis: both connections up. Cluster: the cluster client is up; one
   * shard failing over does not make the node degraded, since it hits every
   * node alike and taking them all out of rotation (readiness) would turn one
   * shard's failover into a full outage. Its channels answer 503 meanwhile.
   */
  health(): 'ok' | 'degraded' {
    if (this.cmd.status !== 'ready') return 'degraded';
    if (this.cmd instanceof Cluster) return 'ok';
    for (const s of this.shards.values()) if (!s.ready) return 'degraded';
    return 'ok';
  }

  /** One PING round at a time, whoever asks (probes from several load balancers share it). */
  private pinging: Promise<boolean> | null = null;

  /**
   * True once Redis answered PING within `timeoutMs` (a cluster: at least one
   * primary did, for the reason given at health()); false otherwise, never
   * rejects. For /readyz: a frozen Redis keeps its TCP connections, so only a
   * round trip shows it.
   */
  ping(timeoutMs: number): Promise<boolean> {
    if (this.pinging) return this.pinging;
    const p = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      const nodes = this.cmd instanceof Cluster ? this.cmd.nodes('master') : [this.cmd];
      if (nodes.length === 0) { clearTimeout(timer); resolve(false); return; }
      Promise.any(nodes.map((n) => n.ping())).then(
        () => { clearTimeout(timer); resolve(true); },
        () => { clearTimeout(timer); resolve(false); },
      );
    });
    this.pinging = p;
    void p.then(() => { this.pinging = null; });
    return p;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.reconcileTimer) clearTimeout(this.reconcileTimer);
    if (this.flushTimer) clearTimeout(this.flushTimer);
    if (this.flushImmediate) clearImmediate(this.flushImmediate);
    for (const p of this.probes.values()) clearTimeout(p.timer);
    this.probes.clear();
    if (this.waiterSweep) clearTimeout(this.waiterSweep);
    for (const w of this.watches.values()) for (const x of this.takeWaiters(w)) x.reject(new BusUnavailableError('bus closed', 1));
    this.watches.clear();
    this.barrier.releaseAll();
    const shards = [...this.shards.values()];
    this.shards.clear();
    await Promise.all([
      ...shards.map((s) => s.close()),
      (async () => {
        try { if (this.cmd.status === 'ready') await this.cmd.quit(); else this.cmd.disconnect(); } catch { this.cmd.disconnect(); }
      })(),
    ]);
  }

  /** For tests and metrics: how many local watchers a channel has (0 when not subscribed). */
  watchers(channel: string): number {
    return this.watches.get(channel)?.refs ?? 0;
  }

  /** For tests: the node (host:port, or `main`) a channel is subscribed on, and whether it is live. */
  placement(channel: string): { shard: string | null; live: boolean } | null {
    const w = this.watches.get(channel);
    return w ? { shard: w.shard?.key ?? null, live: w.phase === 'live' } : null;
  }

  // ---- publish --------------------------------------------------------------

  private async publishSingle(events: { channel: string; json: string }[]): Promise<string[]> {
    const cmd = this.cmd as Redis;
    if (events.length === 1) {
      const e = events[0]!;
      return [(await this.fcall('tidings_publish', e.channel, e.json, this.history, this.ttl)) as string];
    }
    // A batch in MULTI/EXEC: in order, nothing interleaved; each event atomic by the function.
    return this.run(async () => {
      const m = cmd.multi();
      for (const e of events) m.fcall('tidings_publish', 2, streamKey(e.channel), epochKey(e.channel), e.channel, e.json, this.history, this.ttl);
      const res = await m.exec();
      if (!res) throw new BusUnavailableError('Redis transaction aborted', this.retryAfterS());
      return res.map(([err, cursor]) => { if (err) throw err; return cursor as string; });
    });
  }

  /**
   * Cluster: each event goes to the primary owning its channel's slot, on that
   * primary's own connection, so the `WAIT 1` that follows counts the replicas
   * that acknowledged exactly these writes (a cluster-level WAIT goes to a
   * random node). Events of one channel go one after the other (order);
   * channels in parallel (the batch is atomic per event, PROTOCOL.md).
   */
  private async publishCluster(cluster: Cluster, events: { channel: string; json: string }[]): Promise<string[]> {
    const deadline = Date.now() + this.opts.publishTimeoutMs;
    const byChannel = new Map<string, number[]>();
    events.forEach((e, i) => { const l = byChannel.get(e.channel); if (l) l.push(i); else byChannel.set(e.channel, [i]); });
    const cursors: string[] = new Array(events.length);
    /** Primaries written to. */
    const written = new Set<Redis>();
    await Promise.all([...byChannel].map(async ([channel, idx]) => {
      for (const i of idx) {
        const r = await this.publishOnOwner(cluster, channel, events[i]!.json, deadline);
        cursors[i] = r.cursor;
        written.add(r.node);
      }
    }));
    // Never a 200 for an event a failover could lose: a primary that has a
    // replica must hear from one. One with none has nothing to wait for (a
    // fixed WAIT 1 would refuse every publish on it forever).
    await Promise.all([...written].map(async (node) => {
      if ((await this.replicasOf(node)) === 0) return;
      // A little under the deadline, so the answer is this clear refusal rather than the generic timeout.
      const left = Math.max(1, deadline - Date.now() - 50);
      let acked: number;
      try {
        acked = Number(await node.call('WAIT', '1', String(left)));
      } catch (err) {
        throw new BusUnavailableError(`Redis unavailable while waiting for a replica: ${(err as Error).message}`, this.retryAfterS());
      }
      if (acked < 1) {
        throw new BusUnavailableError(`no replica of ${nodeKey(node)} acknowledged the event within ${this.opts.publishTimeoutMs} ms; it may still be delivered, retry`, this.retryAfterS());
      }
    }));
    return cursors;
  }

  /** Primary (host:port) -> its replica count, when it was asked, and the ask in flight. */
  private readonly replicaCounts = new Map<string, { n: number; at: number; asking: Promise<number> | null }>();

  /**
   * How many replicas a primary has that the cluster does not consider failed
   * (CLUSTER REPLICAS, asked of the primary itself). Not ROLE's connected
   * replicas: a replica whose link just broke is still the one a failover
   * promotes, so an event it never got must not be acknowledged; and not
   * CLUSTER SLOTS, which omits a replica still syncing. A replica flagged FAIL
   * (after cluster-node-timeout) stops counting, so a shard left without one
   * is not refused forever. Cached for REPLICA_COUNT_TTL_MS; the first ask
   * waits, later ones refresh in the background.
   */
  private async replicasOf(node: Redis): Promise<number> {
    const key = nodeKey(node);
    const cached = this.replicaCounts.get(key);
    const ask = (): Promise<number> => {
      const p = (async () => {
        const id = String(await node.call('CLUSTER', 'MYID'));
        return countReplicas(String(await node.call('CLUSTER', 'REPLICAS', id)));
      })().then(
        (n) => n,
        () => cached?.n ?? 1, // unknown: assume a replica, so an event is never acknowledged unreplicated
      ).then((n) => { this.replicaCounts.set(key, { n, at: Date.now(), asking: null }); return n; });
      this.replicaCounts.set(key, { n: cached?.n ?? 1, at: cached?.at ?? 0, asking: p });
      return p;
    };
    if (!cached) return ask();
    if (Date.now() - cached.at > REPLICA_COUNT_TTL_MS && !cached.asking) void ask();
    return cached.n;
  }

  private async publishOnOwner(cluster: Cluster, channel: string, json: string, deadline: number): Promise<{ cursor: string; node: Redis }> {
    const slot = calculateSlot(liveKey(channel));
    let ask: string | null = null;
    for (let attempt = 1; ; attempt++) {
      if (Date.now() >= deadline) throw new BusUnavailableError(`publish to ${channel} not stored within ${this.opts.publishTimeoutMs} ms (cluster failing over?)`, this.retryAfterS());
      const owner = ask ?? cluster.slots[slot]?.[0];
      const node = owner ? findNode(cluster, owner) : undefined;
      // Only a connection that is up: a command queued on a connection still
      // being opened may fail after being written, and would then be unsafe to retry.
      if (!node || node.status !== 'ready') {
        if (node && node.status === 'wait') node.connect().catch(() => {});
        cluster.refreshSlotsCache();
        await sleep(Math.min(50 * attempt, 250));
        continue;
      }
      try {
        if (ask !== null) {
          ask = null;
          const [, res] = await Promise.all([node.call('ASKING'), node.fcall('tidings_publish', 2, streamKey(channel), epochKey(channel), channel, json, this.history, this.ttl)]);
          return { cursor: res as string, node };
        }
        const cursor = (await node.fcall('tidings_publish', 2, streamKey(channel), epochKey(channel), channel, json, this.history, this.ttl)) as string;
        return { cursor, node };
      } catch (err) {
        switch (classifyPublishError(err)) {
          case 'moved':
            await new Promise<void>((resolve) => cluster.refreshSlotsCache(() => resolve()));
            continue;
          case 'ask':
            ask = String((err as Error).message).split(' ')[2] ?? null;
            continue;
          case 'retry':
            await sleep(100);
            continue;
          case 'noscript':
            await this.loadLibrary(node).catch(() => {});
            this.loadedOn.add(nodeKey(node));
            continue;
          case 'refused':
            throw err;
          default:
            throw new BusUnavailableError(`Redis unavailable: ${(err as Error)?.message ?? err}`, this.retryAfterS());
        }
      }
    }
  }

  // ---- reads ----------------------------------------------------------------

  private async read(channel: string, cursor: string): Promise<Replay> {
    const parsed = parseCursor(cursor);
    if (!parsed) return { kind: 'reset', head: (await this.fcall('tidings_head', channel, this.ttl)) as string };
    const r = (await this.fcall('tidings_read', channel, parsed.epoch, parsed.id, this.ttl)) as string[];
    if (r[0] === 'reset') return { kind: 'reset', head: r[1]! };
    const events: StoredEvent[] = [];
    for (let i = 2; i < r.length; i += 2) events.push({ channel, cursor: r[i]!, json: r[i + 1]! });
    return { kind: 'events', events };
  }

  /**
   * head/readAfter of a channel this node just started watching wait until its
   * SSUBSCRIBE is in effect: whatever they return is then older than what live
   * delivery starts with, so replay + live leaves no hole (the hub drops the overlap).
   */
  private whenLive(channel: string): Promise<void> {
    const w = this.watches.get(channel);
    if (!w || w.phase === 'live') return Promise.resolve();
    const shard = w.shard ?? undefined;
    if (this.isDown(shard)) return Promise.reject(new BusUnavailableError('Redis subscriber connection is down', this.retryAfterS()));
    return new Promise((resolve, reject) => {
      // Bounded: a channel whose node does not answer fails its waiters
      // (retryable) after commandTimeoutMs, found by one sweep for all of them
      // rather than a timer each (a timer per new subscriber cost a few µs to
      // set and clear in a connect storm; see sweepWaiters).
      (w.waiters ??= []).push({ resolve, reject, until: Date.now() + this.opts.commandTimeoutMs });
      this.waiting.add(w);
      if (this.waiterSweep === null) this.armSweep();
    });
  }

  /** The waiters of a channel, taken off it (resolve or reject them). */
  private takeWaiters(w: Watch): readonly Waiter[] {
    const list = w.waiters;
    if (list === null) return NO_WAITERS;
    w.waiters = null;
    this.waiting.delete(w);
    return list;
  }

  /** Every WAITER_SWEEP_MS while some channel has waiters (so a waiter is failed within commandTimeoutMs + that). */
  private armSweep(): void {
    if (this.closed) return;
    this.waiterSweep = setTimeout(() => this.sweepWaiters(), Math.min(WAITER_SWEEP_MS, this.opts.commandTimeoutMs));
    this.waiterSweep.unref();
  }

  private sweepWaiters(): void {
    this.waiterSweep = null;
    const now = Date.now();
    for (const w of this.waiting) {
      const list = w.waiters;
      let keep = 0;
      if (list !== null) {
        for (const x of list) {
          if (x.until > now) list[keep++] = x;
          else x.reject(new BusUnavailableError('Redis subscription not ready', this.retryAfterS()));
        }
        list.length = keep;
      }
      if (keep === 0) { w.waiters = null; this.waiting.delete(w); }
    }
    if (this.waiting.size > 0) this.armSweep();
  }

  private isDown(shard: Shard | undefined): boolean {
    return shard !== undefined && (shard.conn.status === 'reconnecting' || shard.conn.status === 'close' || shard.conn.status === 'end');
  }

  private async fcall(fn: string, channel: string, ...args: string[]): Promise<unknown> {
    return this.run(() => this.cmd.fcall(fn, 2, streamKey(channel), epochKey(channel), channel, ...args));
  }

  /** Run a command; map outages to BusUnavailableError; reload the library once if Redis lost it. */
  private async run<T>(op: () => Promise<T>): Promise<T> {
    if (this.cmd.status !== 'ready') throw new BusUnavailableError('Redis is unreachable', this.retryAfterS());
    try {
      await this.loaded;
      return await this.withDeadline(this.opts.commandTimeoutMs, 'command', op);
    } catch (err) {
      if (classifyPublishError(err) === 'noscript') {
        // Redis restarted without persistence (or a new primary appeared) between our load and this call.
        try {
          if (this.cmd instanceof Cluster) { this.loadedOn.clear(); await this.loadOnPrimaries(this.cmd.nodes('master')); }
          else { this.loaded = this.loadLibrary(this.cmd); await this.loaded; }
          return await op();
        } catch (again) { err = again; }
      }
      if (isOutage(err)) throw new BusUnavailableError(`Redis unavailable: ${(err as Error)?.message ?? err}`, this.retryAfterS());
      throw err;
    }
  }

  /** Our own time limit: ioredis' queues and cluster retries can hold a command longer. */
  private async withDeadline<T>(ms: number, what: string, op: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new BusUnavailableError(`Redis ${what} got no answer within ${ms} ms`, this.retryAfterS())), ms);
    });
    try {
      return await Promise.race([op(), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async loadLibrary(conn: Redis): Promise<void> {
    await conn.call('FUNCTION', 'LOAD', 'REPLACE', LIBRARY);
  }

  /** ioredis Cluster sends FUNCTION LOAD to one node only: load on every primary ourselves. */
  private async loadOnPrimaries(masters: Redis[]): Promise<void> {
    await Promise.all(masters.map(async (m) => {
      const key = nodeKey(m);
      if (this.loadedOn.has(key)) return;
      await this.loadLibrary(m);
      this.loadedOn.add(key);
    }));
  }

  private loadOnNewPrimaries(): void {
    if (!(this.cmd instanceof Cluster) || this.closed) return;
    this.loadOnPrimaries(this.cmd.nodes('master')).catch((err) => this.log.debug({ err: err.message }, 'redis: loading the library on a primary failed; retried on next refresh or on use'));
  }

  // ---- placement and sync ---------------------------------------------------

  /** The node owning a slot now: `main` for a single Redis, else the primary's host:port (null if unknown). */
  private ownerOf(slot: number): string | null {
    if (!(this.cmd instanceof Cluster)) return 'main';
    return this.cmd.slots[slot]?.[0] ?? null;
  }

  private shardFor(key: string): Shard {
    let s = this.shards.get(key);
    if (s) return s;
    let options: RedisOptions;
    if (key === 'main' && this.single) options = { ...this.single, ...this.subOptions };
    else {
      const i = key.lastIndexOf(':');
      options = { ...this.subOptions, host: key.slice(0, i), port: Number(key.slice(i + 1)) };
    }
    s = new Shard(key, options, {
      ready: (sh) => this.onShardReady(sh),
      down: (sh) => this.onShardDown(sh),
      moved: (sh) => this.onShardMoved(sh),
      message: (sh, k, p) => this.onMessage(sh, k, p),
      error: (sh, err) => this.onConnError(`subscriber ${sh.key}`, err),
    });
    this.shards.set(key, s);
    return s;
  }

  private place(channel: string, w: Watch, owner: string): Shard {
    const shard = this.shardFor(owner);
    shard.channels.add(channel);
    w.shard = shard;
    return shard;
  }

  /**
   * A subscriber connection with no channel left stays open while its node is
   * a primary (the next watched channel there would otherwise pay a connection
   * set-up: about 12 commands instead of one SSUBSCRIBE); one to a node that
   * no longer owns a slot (failed over, emptied by resharding) is closed.
   */
  private dropIfIdle(shard: Shard): void {
    if (shard.channels.size > 0 || shard.key === 'main') return;
    if (this.cmd instanceof Cluster && this.isPrimary(shard.key) && !shard.isClosed) return;
    if (this.shards.get(shard.key) === shard) this.shards.delete(shard.key);
    void shard.close();
  }

  private isPrimary(key: string): boolean {
    if (!(this.cmd instanceof Cluster)) return key === 'main';
    const slots = this.cmd.slots;
    for (let i = 0; i < slots.length; i++) if (slots[i]?.[0] === key) return true;
    return false;
  }

  /** Live delivery of a channel may have been cut: buffer, and catch up before trusting it again. */
  private toSyncing(w: Watch): void {
    if (w.phase === 'live') { w.phase = 'syncing'; w.pending = null; }
  }

  /** (Re)subscribe channels on their node, then establish each one's starting point. */
  private async sync(shard: Shard, channels: string[]): Promise<void> {
    // Subscribed on a connection that is not up, a channel would look live and hear nothing.
    if (!shard.ready) { this.reconcileSoon(); return; }
    const attempt: Attempt = { shard, incarnation: shard.incarnation };
    // SSUBSCRIBE takes channels of one slot per command in a cluster; a single Redis takes any.
    const perSlot = this.cmd instanceof Cluster;
    const bySlot = new Map<number, string[]>();
    for (const ch of channels) {
      const w = this.watches.get(ch);
      if (!w || w.shard !== shard) continue;
      w.attempt = attempt;
      const k = perSlot ? w.slot : 0;
      const l = bySlot.get(k);
      if (l) l.push(ch); else bySlot.set(k, [ch]);
    }
    const done = (chs: string[]) => { for (const ch of chs) { const w = this.watches.get(ch); if (w && w.attempt === attempt) w.attempt = null; } };
    await Promise.all([...bySlot.values()].map(async (group) => {
      try {
        for (let i = 0; i < group.length; i += this.opts.subscribeChunk) {
          await shard.conn.ssubscribe(...group.slice(i, i + this.opts.subscribeChunk).map(liveKey));
        }
        this.log.debug({ node: shard.key, incarnation: attempt.incarnation, channels: group.length }, 'redis ssubscribe confirmed');
      } catch (err) {
        // MOVED (the slot left this node), or the connection dropped: reconcile retries.
        this.log.debug({ err: (err as Error).message, node: shard.key }, 'redis ssubscribe failed; will retry');
        done(group);
        this.rejectWaiters(group);
        this.reconcileSoon();
        return;
      }
      // First subscriptions start at their heads, read in batches; resubscribed
      // channels each catch up from their own last delivered event.
      const fresh: string[] = [];
      const again: string[] = [];
      for (const ch of group) (this.watches.get(ch)?.last === null ? fresh : again).push(ch);
      const [resumed] = await Promise.all([
        Promise.all(again.map((ch) => this.syncOne(ch, attempt))),
        this.syncFresh(fresh, attempt),
      ]);
      done(group);
      // A resubscription (not a first one) proves itself with a probe: see probe().
      const proven = again.filter((_, i) => resumed[i]);
      if (proven.length > 0) this.probe(attempt, proven);
    }));
  }

  /** The attempt is on the channel's current Shard, on the connection it subscribed on, still up. */
  private isCurrent(w: Watch, a: Attempt): boolean {
    return w.shard === a.shard && a.shard.ready && a.shard.incarnation === a.incarnation && this.shards.get(a.shard.key) === a.shard;
  }

  /** A sync is in flight that can still make the channel live (reconcile lets it finish). */
  private attemptAlive(w: Watch): boolean {
    return w.attempt !== null && this.isCurrent(w, w.attempt);
  }

  /**
   * A sync of `w` (generation `gen`, on `attempt`) may still make it live:
   * live only on the connection the SSUBSCRIBE was confirmed on (one that
   * dropped, or a Shard that replaced it on the same node, has not got this
   * subscription, and live delivery would silently stop), and a newer attempt
   * (a reconnect while this one waits) supersedes this one.
   */
  private stillCurrent(channel: string, w: Watch, gen: number, attempt: Attempt): boolean {
    return this.watches.get(channel) === w && w.phase === 'syncing' && w.gen === gen && this.isCurrent(w, attempt);
  }

  /**
   * A resubscribed channel (it delivered before; first subscriptions go
   * through syncFresh) after its SSUBSCRIBE on `attempt` was confirmed: a
   * catch-up read from the last delivered event, or a reset. True when the
   * channel went live, which the caller then probes.
   */
  private async syncOne(channel: string, attempt: Attempt): Promise<boolean> {
    const w = this.watches.get(channel);
    const from = w?.last;
    if (!w || from == null || w.phase !== 'syncing' || !this.isCurrent(w, attempt)) return false;
    const gen = ++w.gen;
    const current = () => this.stillCurrent(channel, w, gen, attempt);
    try {
      let last = from;
      // Prove nothing was missed since the last delivered event, or reset.
      const replay = await this.read(channel, from);
      this.log.debug({ channel, node: attempt.shard.key, from, kind: replay.kind, n: replay.kind === 'events' ? replay.events.length : 0, current: current() }, 'redis catch-up read');
      if (!current()) return false;
      if (replay.kind === 'reset') {
        last = replay.head;
        this.log.warn({ channel, head: last }, 'redis: cannot prove continuity after resubscribing, sending reset');
        this.onGap?.(channel, last);
      } else {
        for (const e of replay.events) { this.deliver(e); last = e.cursor; }
      }
      if (!current()) return false;
      this.goLive(channel, w, last, attempt);
      return (w.phase as Watch['phase']) === 'live';
    } catch (err) {
      // Still 'syncing': reconcile retries. Waiters learn now rather than hang.
      this.log.debug({ err: (err as Error).message, channel }, 'redis sync failed; will retry');
      if (current()) this.rejectWaiters([channel]);
      this.reconcileSoon();
      return false;
    }
  }

  /**
   * First subscriptions (no event delivered yet) confirmed on `attempt`: their
   * heads are read `headBatch` channels per `FCALL tidings_heads` (on a
   * cluster the caller passes the channels of one slot), and each channel goes
   * live at its head. What syncOne does for one channel with `tidings_head`,
   * for one round trip and one call per batch: under a connect storm of
   * per-user channels the head read was one command per new subscriber.
   */
  private async syncFresh(channels: string[], attempt: Attempt): Promise<void> {
    const batch: { channel: string; w: Watch; gen: number }[] = [];
    for (const channel of channels) {
      const w = this.watches.get(channel);
      if (!w || w.phase !== 'syncing' || w.last !== null || !this.isCurrent(w, attempt)) continue;
      // A newer attempt (a reconnect while this one waits) supersedes this one.
      batch.push({ channel, w, gen: ++w.gen });
    }
    const chunks: (typeof batch)[] = [];
    for (let i = 0; i < batch.length; i += this.opts.headBatch) chunks.push(batch.slice(i, i + this.opts.headBatch));
    await Promise.all(chunks.map(async (chunk) => {
      const current = (x: (typeof batch)[number]) => this.stillCurrent(x.channel, x.w, x.gen, attempt);
      let heads: string[];
      try {
        heads = await this.heads(chunk.map((x) => x.channel));
      } catch (err) {
        // Still 'syncing': reconcile retries. Waiters learn now rather than hang.
        this.log.debug({ err: (err as Error).message, channels: chunk.length }, 'redis head read failed; will retry');
        this.rejectWaiters(chunk.filter(current).map((x) => x.channel));
        this.reconcileSoon();
        return;
      }
      for (let i = 0; i < chunk.length; i++) {
        const x = chunk[i]!;
        if (current(x)) this.goLive(x.channel, x.w, heads[i]!, attempt);
      }
    }));
  }

  /** The heads of channels of one slot (any on a single Redis), one FCALL. */
  private async heads(channels: string[]): Promise<string[]> {
    const keys: string[] = new Array(2 * channels.length);
    for (let i = 0; i < channels.length; i++) { keys[2 * i] = streamKey(channels[i]!); keys[2 * i + 1] = epochKey(channels[i]!); }
    const r = (await this.run(() => this.cmd.fcall('tidings_heads', keys.length, ...keys, this.ttl, ...channels))) as string[];
    if (!Array.isArray(r) || r.length !== channels.length) throw new Error(`tidings_heads answered ${Array.isArray(r) ? r.length : typeof r} heads for ${channels.length} channels`);
    return r;
  }

  /**
   * A syncing channel's starting point is proven (`last`, on the connection of
   * `attempt`): deliver what was buffered after it, wake head/readAfter waiters.
   */
  private goLive(channel: string, w: Watch, last: string, attempt: Attempt): void {
    const pending = w.pending;
    const waiters = this.takeWaiters(w);
    w.phase = 'live'; w.last = last; w.pending = null;
    if (this.log.isLevelEnabled('debug')) this.log.debug({ channel, node: attempt.shard.key, incarnation: attempt.incarnation, last, pending: pending?.length ?? 0 }, 'redis channel live');
    this.barrier.advanced(channel, last);
    // offer() may send the channel back to syncing (an epoch change): what follows waits for that sync.
    if (pending !== null) for (const [cursor, json] of pending) { if ((w.phase as Watch['phase']) !== 'live') { (w.pending ??= []).push([cursor, json]); continue; } this.offer(w, channel, cursor, json); }
    for (const x of waiters) x.resolve();
  }

  /**
   * The safety net behind every resubscription: publish a probe on one of the
   * resubscribed channels (one per slot group: Redis drops and moves
   * subscriptions by slot and by connection, never one channel alone) and
   * expect it back on the same connection. A confirmed SSUBSCRIBE followed by
   * silence has many possible causes (a slot map that was stale when we
   * subscribed, a subscription Redis removed in a way the client library did
   * not report); whatever the cause, a probe that does not come back within
   * probeTimeoutMs sends the channels back to syncing: resubscribed where the
   * slot lives now and caught up from the last delivered event. Costs one
   * SPUBLISH per resubscribed slot, only after a disruption.
   */
  private probe(attempt: Attempt, channels: string[]): void {
    if (this.closed) return;
    const nonce = `${this.probeId}.${++this.probeSeq}`;
    const timer = setTimeout(() => this.probeMissed(nonce), this.opts.probeTimeoutMs);
    timer.unref?.();
    this.probes.set(nonce, { attempt, channels, timer, at: Date.now() });
    this.cmd.spublish(liveKey(channels[0]!), `${PROBE_MARK}${nonce} null`).catch((err: Error) => {
      // Not published (the owner is failing over?): unproven, so the timer redoes the subscription.
      this.log.debug({ err: err.message, node: attempt.shard.key }, 'redis: probe not published');
    });
  }

  private onProbe(shard: Shard, payload: string): void {
    const nonce = payload.slice(PROBE_MARK.length, payload.indexOf(' '));
    const p = this.probes.get(nonce);
    // Another node's probe, or ours heard on a connection it does not vouch for.
    if (!p || p.attempt.shard !== shard || shard.incarnation !== p.attempt.incarnation) return;
    clearTimeout(p.timer);
    this.probes.delete(nonce);
    this.log.debug({ node: shard.key, channels: p.channels.length, ms: Date.now() - p.at }, 'redis probe heard: resubscription proven');
  }

  private probeMissed(nonce: string): void {
    const p = this.probes.get(nonce);
    if (!p || this.closed) return;
    this.probes.delete(nonce);
    const deaf: string[] = [];
    for (const ch of p.channels) {
      const w = this.watches.get(ch);
      // Only what this probe vouched for: a channel moved or resubscribed since has its own proof.
      if (!w || w.phase !== 'live' || !this.isCurrent(w, p.attempt)) continue;
      this.toSyncing(w);
      deaf.push(ch);
    }
    if (deaf.length === 0) return;
    this.probesMissed++;
    this.log.warn({ node: p.attempt.shard.key, channels: deaf.length, timeoutMs: this.opts.probeTimeoutMs }, 'redis: a resubscribed channel did not hear its own probe; subscribing again and catching up');
    this.reconcileSoon(0);
  }

  /** Probes that did not come back (tests, metrics): each sent its channels back to syncing. */
  probesMissed = 0;

  private rejectWaiters(channels: string[]): void {
    for (const ch of channels) {
      const w = this.watches.get(ch);
      if (w) for (const x of this.takeWaiters(w)) x.reject(new BusUnavailableError('Redis unavailable', this.retryAfterS()));
    }
  }

  private onShardReady(shard: Shard): void {
    this.log.debug({ node: shard.key, incarnation: shard.incarnation, channels: shard.channels.size }, 'redis shard ready');
    this.onConnReady();
    const chs = [...shard.channels];
    for (const ch of chs) { const w = this.watches.get(ch); if (w) this.toSyncing(w); }
    if (chs.length) void this.sync(shard, chs);
  }

  private onShardDown(shard: Shard): void {
    if (this.closed) return;
    this.log.debug({ node: shard.key, channels: [...shard.channels] }, 'redis shard down');
    this.attempts++;
    const chs = [...shard.channels];
    for (const ch of chs) { const w = this.watches.get(ch); if (w) this.toSyncing(w); }
    // Waiters of these channels would otherwise wait for the whole outage.
    this.rejectWaiters(chs);
    // A cluster primary that died is replaced by a replica elsewhere: look for it.
    if (this.cmd instanceof Cluster && chs.length) this.reconcileSoon();
  }

  /** Redis pushed an unsolicited SUNSUBSCRIBE: a slot left this node. Resubscribe where it lives now. */
  private onShardMoved(shard: Shard): void {
    this.log.debug({ node: shard.key, channels: [...shard.channels] }, 'redis shard moved (unsolicited sunsubscribe or MOVED)');
    for (const ch of shard.channels) { const w = this.watches.get(ch); if (w) this.toSyncing(w); }
    this.reconcileSoon(0);
  }

  /**
   * Schedule a reconcile: refresh the slot map (cluster), move channels whose
   * slot changed owner, and sync every channel not live on a ready node. It
   * reschedules itself with backoff until every channel is live.
   */
  private reconcileSoon(delayMs?: number): void {
    if (this.closed || this.reconcileTimer) return;
    const ms = delayMs ?? reconnectDelay(++this.reconcileAttempts, this.opts.backoffBaseMs, Math.min(this.opts.backoffCapMs, 1_000), this.opts.random);
    this.reconcileTimer = setTimeout(() => { this.reconcileTimer = null; void this.reconcile(); }, ms);
  }

  private async reconcile(): Promise<void> {
    if (this.closed || this.reconciling) return;
    this.reconciling = true;
    try {
      const cluster = this.cmd instanceof Cluster ? this.cmd : null;
      if (cluster && [...this.watches.values()].some((w) => w.phase !== 'live')) {
        await new Promise<void>((resolve) => cluster.refreshSlotsCache(() => resolve()));
      }
      if (this.closed) return;
      const toSync = new Map<Shard, string[]>();
      let waiting = false;
      for (const [ch, w] of this.watches) {
        const owner = this.ownerOf(w.slot);
        if (owner === null) { waiting = true; continue; }
        if (w.shard === null || w.shard.key !== owner || this.shards.get(owner) !== w.shard) {
          const old = w.shard;
          if (old) {
            old.channels.delete(ch);
            if (old.ready) old.conn.sunsubscribe(liveKey(ch)).catch(() => {});
            this.dropIfIdle(old);
          }
          this.log.debug({ channel: ch, from: old?.key, to: owner, phase: w.phase }, 'redis channel moves to new owner');
          this.toSyncing(w);
          this.place(ch, w, owner);
        }
        if (w.phase === 'live') continue;
        waiting = true;
        const shard = w.shard!;
        // Whatever is in flight: a channel placed on a connection that is not up gets it started.
        if (!shard.ready) { shard.start(); continue; }
        if (this.attemptAlive(w)) continue;
        const l = toSync.get(shard);
        if (l) l.push(ch); else toSync.set(shard, [ch]);
      }
      for (const [shard, chs] of toSync) void this.sync(shard, chs);
      for (const shard of [...this.shards.values()]) this.dropIfIdle(shard);
      if (waiting) this.reconcileSoon();
      else this.reconcileAttempts = 0;
    } finally {
      this.reconciling = false;
    }
  }

  private onMessage(shard: Shard, key: string, payload: string): void {
    const channel = channelOfLiveKey(key);
    if (channel === null) return;
    const w = this.watches.get(channel);
    // A late message from a node the channel left: it is in history, the catch-up has it.
    if (!w || w.shard !== shard) return;
    if (payload.startsWith(PROBE_MARK)) { this.onProbe(shard, payload); return; }
    const sp = payload.indexOf(' ');
    if (sp <= 0) { this.log.warn({ channel }, 'redis: malformed live message ignored'); return; }
    const cursor = payload.slice(0, sp);
    const json = payload.slice(sp + 1);
    if (w.phase === 'syncing') (w.pending ??= []).push([cursor, json]);
    else this.offer(w, channel, cursor, json);
  }

  /** Deliver a live message unless it is at or before what was already delivered (catch-up overlap). */
  private offer(w: Watch, channel: string, cursor: string, json: string): void {
    const last = w.last!;
    const pc = parseCursor(cursor);
    const pl = parseCursor(last);
    if (pc && pl && pc.epoch !== pl.epoch) {
      // The channel's epoch changed under us (its keys were lost, e.g. a failover
      // before the epoch was replicated, or they expired): prove or reset.
      w.phase = 'syncing';
      w.pending = [[cursor, json]];
      this.reconcileSoon(0);
      return;
    }
    if (!this.isAfter(cursor, last)) return;
    w.last = cursor;
    this.deliver({ channel, cursor, json });
    this.barrier.advanced(channel, cursor);
  }

  private deliver(e: StoredEvent): void {
    try { this.onEvent?.(e); } catch (err) { this.log.error({ err, channel: e.channel }, 'bus listener threw'); }
  }

  private onConnError(name: string, err: Error): void {
    if (this.closed) return;
    if (!this.down) { this.down = true; this.log.warn({ err: err.message, connection: name }, 'redis connection error; reconnecting with backoff'); }
    else this.log.debug({ err: err.message, connection: name }, 'redis still unreachable');
  }

  private onConnClose(): void {
    if (this.closed) return;
    this.attempts++;
    // A Redis killed or restarted closes the socket cleanly (FIN, no 'error'); if it is back
    // before the first reconnect attempt fails, no error event ever comes: the outage is logged here.
    this.onConnError('command', new Error('connection closed'));
  }

  private onConnReady(): void {
    if (this.health() === 'ok') {
      if (this.down) this.log.info('redis reconnected');
      this.down = false;
      this.attempts = 0;
    }
  }

  /** Retry-After for a 503: the current reconnect delay, rounded up to whole seconds (RFC 9110 §10.2.3). */
  private retryAfterS(): number {
    const ms = reconnectDelay(this.attempts + 1, this.opts.backoffBaseMs, this.opts.backoffCapMs, () => 1);
    return Math.max(1, Math.ceil(ms / 1000));
  }
}

/** Pure: replicas in a CLUSTER REPLICAS answer that are not flagged `fail` (`fail?` still counts). */
export function countReplicas(text: string): number {
  return text.split('\n').filter((line) => {
    const flags = line.split(' ')[2];
    return flags !== undefined && !flags.split(',').includes('fail');
  }).length;
}

function nodeKey(node: Redis): string {
  return `${node.options.host}:${node.options.port}`;
}

/** The cluster client's own connection to a node (host:port), if it has one. */
function findNode(cluster: Cluster, key: string): Redis | undefined {
  return cluster.nodes('all').find((n) => nodeKey(n) === key);
}

/** Never log a password that may sit in the URL. */
function redact(url: string): string {
  return url.replace(/\/\/([^@/]*)@/, '//***@');
}
