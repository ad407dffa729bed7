// One subscriber connection to one Redis node (a cluster primary, or the single
// Redis), holding the sharded Pub/Sub subscriptions (SSUBSCRIBE) of the
// Tidings channels whose slot that node owns.
//
// Why our own connections rather than ioredis' `shardedSubscribers`: ioredis
// resubscribes by itself after a failover, a resharding or a dropped
// connection, without telling which channels were cut off. Every such moment
// must be followed by a catch-up read from the last delivered event, or the
// events published meanwhile are lost silently. Here each connection reports
// `ready` (subscribe and catch up), `down` (stop trusting live delivery) and
// `moved` (Redis 7 pushed an unsolicited SUNSUBSCRIBE: a slot left this node),
// and the bus decides.
import { Redis, type RedisOptions } from 'ioredis';

export interface ShardEvents {
  ready(shard: Shard): void;
  down(shard: Shard): void;
  moved(shard: Shard): void;
  message(shard: Shard, key: string, payload: string): void;
  error(shard: Shard, err: Error): void;
}

export class Shard {
  /** Tidings channels placed on this node (watched, whatever their phase). */
  readonly channels = new Set<string>();
  readonly conn: Redis;
  /**
   * Which connection of this Shard is up: bumped at every 'ready'. A
   * subscription confirmed on one incarnation says nothing about the next one
   * (a reconnect starts with none), so a sync remembers the incarnation it
   * subscribed on and may make a channel live only while it is still current.
   */
  incarnation = 0;
  private closed = false;

  /** @param key `host:port` of the node (or `main` for a single Redis). */
  constructor(readonly key: string, options: RedisOptions, events: ShardEvents) {
    this.conn = new Redis({
      ...options,
      lazyConnect: true,
      // We resubscribe ourselves, after a catch-up read, to prove nothing was missed.
      autoResubscribe: false,
      // A subscribe while disconnected fails at once; the next 'ready' redoes it.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      enableAutoPipelining: false,
    });
    this.conn.on('ready', () => { this.incarnation++; if (!this.closed) events.ready(this); });
    this.conn.on('close', () => { if (!this.closed) events.down(this); });
    this.conn.on('moved', () => { if (!this.closed) events.moved(this); });
    // ioredis emits 'error' on every failed attempt; an unhandled 'error' would crash the process.
    this.conn.on('error', (err: Error) => { if (!this.closed) events.error(this, err); });
    this.conn.on('smessage', (key: string, payload: string) => events.message(this, key, payload));
  }

  get ready(): boolean {
    return !this.closed && this.conn.status === 'ready';
  }

  /** Closed by the bus (its node left, or the bus closed): never ready again; a new Shard replaces it. */
  get isClosed(): boolean {
    return this.closed;
  }

  /** Start connecting (idempotent); 'ready' follows. */
  start(): void {
    if (this.conn.status === 'wait') this.conn.connect().catch(() => { /* reported through 'error' */ });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      if (this.conn.status === 'ready') await this.conn.quit();
      else this.conn.disconnect();
    } catch {
      this.conn.disconnect();
    }
  }
}
