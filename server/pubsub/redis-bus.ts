// The bus for several nodes: Redis Streams as history, Pub/Sub as live delivery.
//
// One command connection (FCALL of the `tidings` library, redis-scripts.ts) and
// one subscriber connection per node, whatever the number of WebSocket clients:
// a channel is SUBSCRIBEd while at least one local client watches it and
// UNSUBSCRIBEd at zero, so a channel nobody here listens to costs this node nothing.
//
// Per watched channel the bus delivers to `onEvent` one ordered sequence with
// no gap and no duplicate, starting at the channel's head read just after the
// SUBSCRIBE took effect. After a reconnect it replays from the last ID it
// delivered (XRANGE inside tidings_read) or, when it cannot prove continuity,
// calls `onGap` so the hub sends `reset` (PROTOCOL.md "No silent loss").
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { BusUnavailableError, type Bus, type Replay, type StoredEvent } from './bus.js';
import {
  EPOCH_KEY, LIBRARY, LIVE_PREFIX, compareCursors, liveKey, parseCursor, streamKey,
} from './redis-scripts.js';

// publish/head/readAfter throw BusUnavailableError (code BUS_UNAVAILABLE, with
// retryAfterS) while Redis is unreachable: the HTTP side answers 503 + Retry-After.
export { BusUnavailableError };

/** Tunables of the Redis connections, each with its default and why. */
export interface RedisBusOptions {
  /** A command that gets no answer within this is failed (503) rather than left hanging a publisher. @default 2000 */
  commandTimeoutMs: number;
  /** First reconnect delay; doubles per failed attempt (full jitter). @default 100 */
  backoffBaseMs: number;
  /** Cap of the reconnect delay, so a restarted Redis is found within seconds. @default 3000 */
  backoffCapMs: number;
  /** Channels per SUBSCRIBE command when resubscribing after a reconnect. @default 1000 */
  subscribeChunk: number;
  /** Random source for the backoff jitter (tests pass a seeded one). @default Math.random */
  random: () => number;
}

export const REDIS_BUS_DEFAULTS: RedisBusOptions = {
  commandTimeoutMs: 2_000,
  backoffBaseMs: 100,
  backoffCapMs: 3_000,
  subscribeChunk: 1_000,
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

/** A watched channel. `syncing`: SUBSCRIBE sent, head or catch-up pending, live messages buffered. */
type Watch =
  | { phase: 'syncing'; refs: number; last: string | null; pending: [string, string][]; waiters: Waiter[]; gen: number }
  | { phase: 'live'; refs: number; last: string; pending: null; waiters: null; gen: number };
interface Waiter { resolve(): void; reject(err: Error): void }

/** True for errors that mean "Redis is not there" rather than "Redis said no". */
function isOutage(err: unknown): boolean {
  if (err instanceof BusUnavailableError) return true;
  const name = (err as { name?: string } | null)?.name;
  const msg = String((err as { message?: string } | null)?.message ?? err);
  if (name === 'ReplyError') return /^(LOADING|BUSY|MASTERDOWN|TRYAGAIN|CLUSTERDOWN|READONLY|OOM)\b/.test(msg);
  return true;
}

export class RedisBus implements Bus {
  onEvent: ((event: StoredEvent) => void) | null = null;
  onGap: ((channel: string, head: string) => void) | null = null;

  private readonly watches = new Map<string, Watch>();
  private readonly history: number;
  /** config.historyTtlS as the function's argument. */
  private readonly ttl: string;
  private readonly opts: RedisBusOptions;
  /** Channels watched since the last flush: one SUBSCRIBE for all of them (see watch()). */
  private toSync: string[] = [];
  private readonly flushSoon = (): void => this.flushWatches();
  /** Resolves once the library is loaded on the current command connection. */
  private loaded: Promise<void> = Promise.resolve();
  private attempts = 0;
  private closed = false;
  /** Outage bookkeeping for logs: warn once per outage, not per retry. */
  private down = false;

  private constructor(
    private readonly cmd: Redis,
    private readonly sub: Redis,
    config: Config,
    private readonly log: Logger,
    opts: RedisBusOptions,
  ) {
    this.history = config.history;
    this.ttl = String(config.historyTtlS);
    this.opts = opts;
    for (const [name, conn] of [['command', cmd], ['subscriber', sub]] as const) {
      // ioredis emits 'error' on every failed attempt; an unhandled 'error' would crash the process.
      conn.on('error', (err: Error) => this.onConnError(name, err));
      conn.on('close', () => this.onConnClose());
    }
    cmd.on('ready', () => {
      this.loaded = this.loadLibrary();
      // Channels left syncing while only the command connection was down resume here.
      this.loaded.then(() => this.syncWaiting(), () => {});
      this.onConnReady();
    });
    sub.on('ready', () => { this.onConnReady(); this.resync(); });
    sub.on('message', (key: string, payload: string) => this.onMessage(key, payload));
  }

  /** Connect both connections and load the library; rejects with a clear error if Redis is unreachable. */
  static async connect(url: string, config: Config, log: Logger, options: Partial<RedisBusOptions> = {}): Promise<RedisBus> {
    const opts = { ...REDIS_BUS_DEFAULTS, ...options };
    let bus: RedisBus | null = null;
    const connOpts = {
      lazyConnect: true,
      // Fail fast while disconnected (publish -> 503) instead of queueing unboundedly.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: opts.commandTimeoutMs,
      // We resubscribe ourselves, after a catch-up read, to prove nothing was missed.
      autoResubscribe: false,
      retryStrategy: (times: number) => (bus && bus.closed ? null : reconnectDelay(times, opts.backoffBaseMs, opts.backoffCapMs, opts.random)),
    };
    // Auto-pipelining: the head reads of a burst of new subscribers (and the
    // publishes of a burst) leave in one write instead of one each.
    const cmd = new Redis(url, { ...connOpts, connectionName: 'tidings-cmd', enableAutoPipelining: true });
    const sub = new Redis(url, { ...connOpts, connectionName: 'tidings-sub' });
    bus = new RedisBus(cmd, sub, config, log, opts);
    try {
      await Promise.all([cmd.connect(), sub.connect()]);
      await Promise.all([cmd, sub].map((c) => (c.status === 'ready' ? undefined : new Promise((resolve) => c.once('ready', resolve)))));
      await bus.loaded;
    } catch (err) {
      await bus.close();
      throw new Error(`cannot connect to Redis at ${redact(url)}: ${(err as Error).message}`);
    }
    return bus;
  }

  // ---- Bus ----------------------------------------------------------------

  async publish(events: { channel: string; json: string }[]): Promise<string[]> {
    if (events.length === 0) return [];
    if (events.length === 1) {
      const e = events[0]!;
      return [(await this.fcall('tidings_publish', e.channel, e.json, String(this.history), this.ttl)) as string];
    }
    // A batch in MULTI/EXEC: in order, nothing interleaved; each event atomic by the function.
    return this.run(async () => {
      const m = this.cmd.multi();
      for (const e of events) m.fcall('tidings_publish', 2, streamKey(e.channel), EPOCH_KEY, e.channel, e.json, String(this.history), this.ttl);
      const res = await m.exec();
      if (!res) throw new BusUnavailableError('Redis transaction aborted', this.retryAfterS());
      return res.map(([err, cursor]) => { if (err) throw err; return cursor as string; });
    });
  }

  /**
   * A watched channel's head is what this node last delivered for it (read
   * from Redis when the watch began, then advanced by every live event): any
   * later event reaches the hub, so it is a valid starting point without a
   * second round trip. Unwatched channels (polls) ask Redis, and so does
   * everyone while a connection is down (the answer is then BUS_UNAVAILABLE:
   * a subscriber is not welcomed on a head this node cannot keep up to date).
   */
  async head(channel: string): Promise<string> {
    await this.whenLive(channel);
    const w = this.watches.get(channel);
    if (w !== undefined && w.phase === 'live' && this.health() === 'ok') return w.last;
    return (await this.fcall('tidings_head', channel)) as string;
  }

  async readAfter(channel: string, cursor: string): Promise<Replay> {
    await this.whenLive(channel);
    return this.read(channel, cursor);
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
    this.watches.set(channel, { phase: 'syncing', refs: 1, last: null, pending: [], waiters: [], gen: 0 });
    // Channels watched in one turn of the event loop (a connect storm) share one
    // SUBSCRIBE. If the subscriber is not ready, its next 'ready' resyncs every watched channel.
    if (this.toSync.push(channel) === 1) setImmediate(this.flushSoon);
  }

  private flushWatches(): void {
    const channels = [...new Set(this.toSync)].filter((ch) => this.watches.get(ch)?.phase === 'syncing');
    this.toSync = [];
    if (channels.length > 0 && this.sub.status === 'ready') void this.sync(channels);
  }

  unwatch(channel: string): void {
    const w = this.watches.get(channel);
    if (!w) return;
    if (--w.refs > 0) return;
    this.watches.delete(channel);
    if (w.waiters) for (const x of w.waiters) x.reject(new BusUnavailableError(`unwatched ${channel}`, 1));
    if (this.sub.status === 'ready') this.sub.unsubscribe(liveKey(channel)).catch((err) => this.log.debug({ err }, 'redis unsubscribe failed'));
  }

  health(): 'ok' | 'degraded' {
    return this.cmd.status === 'ready' && this.sub.status === 'ready' ? 'ok' : 'degraded';
  }

  /** One PING at a time, whoever asks (probes from several load balancers share it). */
  private pinging: Promise<boolean> | null = null;

  ping(timeoutMs: number): Promise<boolean> {
    if (this.pinging) return this.pinging;
    const p = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.cmd.ping().then(
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
    for (const w of this.watches.values()) if (w.waiters) for (const x of w.waiters) x.reject(new BusUnavailableError('bus closed', 1));
    this.watches.clear();
    await Promise.all([this.cmd, this.sub].map(async (c) => {
      try { if (c.status === 'ready') await c.quit(); else c.disconnect(); } catch { c.disconnect(); }
    }));
  }

  /** For tests and metrics: how many local watchers a channel has (0 when not subscribed). */
  watchers(channel: string): number {
    return this.watches.get(channel)?.refs ?? 0;
  }

  // ---- internals ----------------------------------------------------------

  private async read(channel: string, cursor: string): Promise<Replay> {
    const parsed = parseCursor(cursor);
    if (!parsed) return { kind: 'reset', head: (await this.fcall('tidings_head', channel)) as string };
    const r = (await this.fcall('tidings_read', channel, parsed.epoch, parsed.id)) as string[];
    if (r[0] === 'reset') return { kind: 'reset', head: r[1]! };
    const events: StoredEvent[] = [];
    for (let i = 2; i < r.length; i += 2) events.push({ channel, cursor: r[i]!, json: r[i + 1]! });
    return { kind: 'events', events };
  }

  /**
   * head/readAfter of a channel this node just started watching wait until its
   * SUBSCRIBE is in effect: whatever they return is then older than what live
   * delivery starts with, so replay + live leaves no hole (the hub drops the overlap).
   */
  private whenLive(channel: string): Promise<void> {
    const w = this.watches.get(channel);
    if (!w || w.phase === 'live') return Promise.resolve();
    if (this.sub.status !== 'ready') return Promise.reject(new BusUnavailableError('Redis subscriber connection is down', this.retryAfterS()));
    return new Promise((resolve, reject) => w.waiters.push({ resolve, reject }));
  }

  private async fcall(fn: string, channel: string, ...args: string[]): Promise<unknown> {
    return this.run(() => this.cmd.fcall(fn, 2, streamKey(channel), EPOCH_KEY, channel, ...args));
  }

  /** Run a command; map outages to BusUnavailableError; reload the library once if Redis lost it. */
  private async run<T>(op: () => Promise<T>): Promise<T> {
    if (this.cmd.status !== 'ready') throw new BusUnavailableError('Redis is unreachable', this.retryAfterS());
    try {
      await this.loaded;
      return await op();
    } catch (err) {
      if (/Function not found/i.test(String((err as Error)?.message))) {
        // Redis restarted without persistence between our 'ready' and this call.
        try { this.loaded = this.loadLibrary(); await this.loaded; return await op(); } catch (again) { err = again; }
      }
      if (isOutage(err)) throw new BusUnavailableError(`Redis unavailable: ${(err as Error)?.message ?? err}`, this.retryAfterS());
      throw err;
    }
  }

  private async loadLibrary(): Promise<void> {
    await this.cmd.call('FUNCTION', 'LOAD', 'REPLACE', LIBRARY);
  }

  /** Subscribe (or resubscribe) channels, then establish each one's starting point. */
  private async sync(channels: string[]): Promise<void> {
    try {
      for (let i = 0; i < channels.length; i += this.opts.subscribeChunk) {
        await this.sub.subscribe(...channels.slice(i, i + this.opts.subscribeChunk).map(liveKey));
      }
    } catch (err) {
      // The subscriber dropped mid-way: its next 'ready' resyncs everything.
      this.log.debug({ err }, 'redis subscribe failed; will resync on reconnect');
      return;
    }
    await Promise.all(channels.map((ch) => this.syncOne(ch)));
  }

  private async syncOne(channel: string): Promise<void> {
    const w = this.watches.get(channel);
    if (!w || w.phase !== 'syncing') return;
    // A newer attempt (a reconnect while this one waits) supersedes this one.
    const gen = ++w.gen;
    const current = () => this.watches.get(channel) === w && w.phase === 'syncing' && w.gen === gen;
    try {
      let last: string;
      if (w.last === null) {
        last = (await this.fcall('tidings_head', channel)) as string;
      } else {
        // Reconnected: prove nothing was missed since the last delivered event, or reset.
        const replay = await this.read(channel, w.last);
        if (!current()) return;
        if (replay.kind === 'reset') {
          last = replay.head;
          this.log.warn({ channel, head: last }, 'redis: cannot prove continuity after reconnect, sending reset');
          this.onGap?.(channel, last);
        } else {
          last = w.last;
          for (const e of replay.events) { this.deliver(e); last = e.cursor; }
        }
      }
      if (!current()) return;
      const pending = w.pending;
      const waiters = w.waiters;
      const live = w as unknown as Extract<Watch, { phase: 'live' }>;
      live.phase = 'live'; live.last = last; live.pending = null; live.waiters = null;
      for (const [cursor, json] of pending) this.offer(live, channel, cursor, json);
      for (const x of waiters) x.resolve();
    } catch (err) {
      // Still 'syncing': the next reconnect retries. Waiters learn now rather than hang.
      this.log.debug({ err, channel }, 'redis sync failed; will retry on reconnect');
      if (current()) {
        const waiters = w.waiters.splice(0);
        for (const x of waiters) x.reject(new BusUnavailableError('Redis unavailable', this.retryAfterS()));
      }
    }
  }

  /** Subscriber is (re)connected: every watched channel goes back to syncing from its last delivered ID. */
  private resync(): void {
    const channels: string[] = [];
    for (const [ch, w] of this.watches) {
      if (w.phase === 'live') {
        const s = w as unknown as Extract<Watch, { phase: 'syncing' }>;
        s.phase = 'syncing'; s.pending = []; s.waiters = [];
      }
      channels.push(ch);
    }
    if (channels.length) void this.sync(channels);
  }

  /** Retry channels still syncing (their last attempt failed on the command connection). */
  private syncWaiting(): void {
    if (this.sub.status !== 'ready') return;
    const channels = [...this.watches].filter(([, w]) => w.phase === 'syncing').map(([ch]) => ch);
    if (channels.length) void this.sync(channels);
  }

  private onMessage(key: string, payload: string): void {
    if (!key.startsWith(LIVE_PREFIX)) return;
    const channel = key.slice(LIVE_PREFIX.length);
    const w = this.watches.get(channel);
    if (!w) return;
    const sp = payload.indexOf(' ');
    if (sp <= 0) { this.log.warn({ channel }, 'redis: malformed live message ignored'); return; }
    const cursor = payload.slice(0, sp);
    const json = payload.slice(sp + 1);
    if (w.phase === 'syncing') w.pending.push([cursor, json]);
    else this.offer(w, channel, cursor, json);
  }

  /** Deliver a live message unless it is at or before what was already delivered (catch-up overlap). */
  private offer(w: Extract<Watch, { phase: 'live' }>, channel: string, cursor: string, json: string): void {
    if (!this.isAfter(cursor, w.last)) return;
    w.last = cursor;
    this.deliver({ channel, cursor, json });
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
    // Waiters of channels still syncing would otherwise wait for the whole outage.
    if (this.sub.status !== 'ready') {
      for (const w of this.watches.values()) {
        if (w.phase === 'syncing') for (const x of w.waiters.splice(0)) x.reject(new BusUnavailableError('Redis unavailable', this.retryAfterS()));
      }
    }
  }

  private onConnReady(): void {
    if (this.cmd.status === 'ready' && this.sub.status === 'ready') {
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

/** Never log a password that may sit in the URL. */
function redact(url: string): string {
  return url.replace(/\/\/([^@/]*)@/, '//***@');
}
