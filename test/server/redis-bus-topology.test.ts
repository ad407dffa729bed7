// The cluster bus's subscription bookkeeping under topology changes, made
// deterministic: a stand-in for ioredis' Cluster whose slot map the test sets
// (and whose catch-up reads it can hold back), in front of two real
// redis-servers playing two cluster nodes. The subscriber connections are the
// bus's own, real ones. What a real cluster does only now and then under load
// (a catch-up read still in flight while the slot map moves on, a subscription
// that goes silent) happens here every time.
import { EventEmitter } from 'node:events';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { pino, type Logger } from 'pino';
import { DEFAULTS, type Config } from '../../server/config.js';
import type { StoredEvent } from '../../server/pubsub/bus.js';
import { REDIS_BUS_DEFAULTS, RedisBus, type RedisBusOptions } from '../../server/pubsub/redis-bus.js';
import { LIBRARY, epochKey, liveKey, streamKey } from '../../server/pubsub/redis-scripts.js';
import { startRedis, type TestRedis } from '../support/redis.js';

const log = pino({ level: process.env['TIDINGS_TEST_LOG'] ?? 'silent' });

async function until(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 8_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * What the bus uses of ioredis' Cluster: `slots`, `status`, `refreshSlotsCache`,
 * `nodes`, `fcall`, `spublish`, events. Every slot belongs to `owner`. Reads
 * (tidings_read) wait while `hold` is set, as a reply stuck behind a slow
 * network or a busy node would.
 */
interface FakeCluster extends Cluster {
  owner: string;
  hold: Promise<void> | null;
  /** Reads waiting on `hold`. */
  held: number;
  moveAll(to: string): void;
}

function fakeCluster(clients: Map<string, Redis>, owner: string): FakeCluster {
  const fake = Object.create(Cluster.prototype) as FakeCluster;
  EventEmitter.call(fake);
  const self = fake as unknown as Record<string, unknown>;
  self['status'] = 'ready';
  fake.hold = null;
  fake.held = 0;
  fake.moveAll = (to: string) => {
    fake.owner = to;
    const keys = [to];
    self['slots'] = Array.from({ length: 16_384 }, () => keys);
  };
  fake.moveAll(owner);
  const route = () => clients.get(fake.owner)!;
  // The refresh the bus asks for finds the map as the test set it.
  self['refreshSlotsCache'] = (cb?: (err?: Error) => void) => { setImmediate(() => cb?.()); };
  self['nodes'] = () => [route()];
  self['fcall'] = async (fn: string, numkeys: number, ...args: string[]) => {
    if (fn === 'tidings_read' && fake.hold) {
      fake.held++;
      try { await fake.hold; } finally { fake.held--; }
    }
    return route().fcall(fn, numkeys, ...args);
  };
  self['spublish'] = (key: string, message: string) => route().spublish(key, message);
  self['quit'] = async () => 'OK';
  self['disconnect'] = () => {};
  return fake;
}

describe('cluster bus subscriptions across topology changes (stand-in cluster, real Redis nodes)', () => {
  let a: TestRedis;
  let b: TestRedis;
  const conns: Redis[] = [];
  const buses: RedisBus[] = [];
  let n = 0;
  const keyOf = (r: TestRedis) => `127.0.0.1:${r.port}`;

  beforeAll(async () => {
    [a, b] = await Promise.all([startRedis(), startRedis()]);
    for (const r of [a, b]) {
      const c = new Redis(r.url);
      await c.call('FUNCTION', 'LOAD', 'REPLACE', LIBRARY);
      c.disconnect();
    }
  });
  afterEach(async () => {
    await Promise.all(buses.splice(0).map((x) => x.close()));
    for (const c of conns.splice(0)) c.disconnect();
  });
  afterAll(async () => { await Promise.all([a?.stop(), b?.stop()]); });

  async function open(opts: Partial<RedisBusOptions> = {}) {
    const clients = new Map<string, Redis>();
    for (const r of [a, b]) {
      const c = new Redis(r.url);
      conns.push(c);
      clients.set(keyOf(r), c);
    }
    const fake = fakeCluster(clients, keyOf(a));
    const config: Config = { ...DEFAULTS };
    const sub: RedisOptions = { commandTimeout: 2_000, retryStrategy: () => 50, connectionName: 'tidings-sub' };
    const options: RedisBusOptions = { commandTimeoutMs: 2_000, publishTimeoutMs: 2_000, backoffBaseMs: 20, backoffCapMs: 100, subscribeChunk: 1_000, headBatch: 256, watchGatherMs: 0, probeTimeoutMs: 3_000, random: () => 0.5, ...opts };
    const Ctor = RedisBus as unknown as new (cmd: Cluster, sub: RedisOptions, single: null, config: Config, log: Logger, opts: RedisBusOptions) => RedisBus;
    const bus = new Ctor(fake, sub, null, config, log, options);
    buses.push(bus);
    const got = { events: [] as StoredEvent[], gaps: [] as [string, string][] };
    bus.onEvent = (e) => got.events.push(e);
    bus.onGap = (ch, head) => got.gaps.push([ch, head]);
    return { bus, fake, got, pub: clients.get(keyOf(a))! };
  }

  /** Publish straight on node A, as another Tidings node would. */
  const publishOn = async (pub: Redis, ch: string, i: number): Promise<string> =>
    (await pub.fcall('tidings_publish', 2, streamKey(ch), epochKey(ch), ch, JSON.stringify({ i }), '1000', '0')) as string;

  /** Cut every subscriber connection of node A: the bus reconnects and resubscribes (a catch-up read follows). */
  async function cutSubscribers(r: TestRedis): Promise<void> {
    const admin = new Redis(r.url);
    try { await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub'); } finally { admin.disconnect(); }
  }

  /** A channel live with one event, then its subscriber connection cut while the resubscription's catch-up read is held. */
  async function resubscribingWithCatchUpHeld(opts?: Parameters<typeof open>[0]) {
    const o = await open(opts);
    const ch = `topo:${++n}`;
    o.bus.watch(ch);
    await o.bus.head(ch);
    const first = await publishOn(o.pub, ch, 0);
    await until(() => o.got.events.length === 1, 'first event live');
    let release!: () => void;
    o.fake.hold = new Promise<void>((r) => { release = r; });
    await cutSubscribers(a);
    await until(() => o.fake.held === 1, 'catch-up read in flight');
    return { ...o, ch, first, release };
  }

  /**
   * A resubscription whose SSUBSCRIBE was confirmed and whose subscription then disappears without a word to the
   * bus (as Redis dropping a slot's channels can, when the client library takes the notice for the answer to
   * another command): live, but deaf, with one event (`missed`) published meanwhile.
   */
  async function liveButDeaf(probeTimeoutMs: number) {
    const o = await resubscribingWithCatchUpHeld({ probeTimeoutMs });
    const shard = (o.bus as unknown as { shards: Map<string, { conn: Redis }> }).shards.get(keyOf(a))!;
    await shard.conn.sunsubscribe(liveKey(o.ch));
    const missed = await publishOn(o.pub, o.ch, 1);
    o.release();
    o.fake.hold = null;
    await until(() => o.bus.placement(o.ch)?.live === true, 'live (but deaf)');
    return { ...o, missed };
  }

  it('never makes a channel live on a connection it did not subscribe on: a catch-up read that returns after the slot moved away and back is dropped, and the channel is subscribed on the node\'s current connection', async () => {
    // The resubscription's catch-up read is held back...
    const { bus, fake, got, pub, ch, first, release } = await resubscribingWithCatchUpHeld();
    // ...while the slot map moves the channel to B (a failover seen by one node
    // first) and back to A (a stale map from a node that has not heard yet).
    fake.moveAll(keyOf(b));
    fake.emit('refresh');
    await until(() => bus.placement(ch)?.shard === keyOf(b), 'placed on B');
    fake.moveAll(keyOf(a));
    fake.emit('refresh');
    await until(() => bus.placement(ch)?.shard === keyOf(a), 'placed on A again');
    const missed = await publishOn(pub, ch, 1);
    release();
    fake.hold = null;
    await until(() => bus.placement(ch)?.live === true, 'live again');

    // Whatever is published now must arrive live.
    const after = await publishOn(pub, ch, 2);
    await until(() => got.events.some((e) => e.cursor === after), 'the event published after the moves', 5_000);
    expect(got.events.map((e) => e.cursor)).toEqual([first, missed, after]);
    expect(got.gaps).toEqual([]);
  });

  it('redoes a resubscription that does not hear its own probe: subscribed, caught up, live again', async () => {
    const { bus, got, pub, ch, first, missed } = await liveButDeaf(300);

    const after = await publishOn(pub, ch, 2);
    await until(() => got.events.some((e) => e.cursor === after), 'the event published while deaf', 5_000);
    expect(bus.probesMissed).toBe(1);
    expect(got.events.map((e) => e.cursor)).toEqual([first, missed, after]);
    expect(got.gaps).toEqual([]);
    // And once resubscribed, it hears live events again.
    const later = await publishOn(pub, ch, 3);
    await until(() => got.events.some((e) => e.cursor === later), 'live after the probe');
  });

  it(`at the default probe timeout (${REDIS_BUS_DEFAULTS.probeTimeoutMs} ms), a deaf resubscription is redone after it and not before`, async () => {
    const timeout = REDIS_BUS_DEFAULTS.probeTimeoutMs;
    const { bus, got, missed } = await liveButDeaf(timeout);
    const probes = [...(bus as unknown as { probes: Map<string, { at: number }> }).probes.values()];
    expect(probes).toHaveLength(1);
    // Halfway through the timeout the probe is still awaited (a timer fires late on a loaded machine, never early)...
    await new Promise((r) => setTimeout(r, probes[0]!.at + timeout / 2 - Date.now()));
    expect(bus.probesMissed).toBe(0);
    // ...and once it has passed, the resubscription is redone and catches up.
    await until(() => bus.probesMissed === 1, 'the probe missed', timeout + 5_000);
    expect(Date.now() - probes[0]!.at).toBeGreaterThanOrEqual(timeout);
    await until(() => got.events.some((e) => e.cursor === missed), 'the event published while deaf');
    expect(got.gaps).toEqual([]);
  }, 20_000);

  it('proves an ordinary resubscription with one probe that comes back, and never hands a probe on as an event', async () => {
    const { bus, got, pub } = await open({ probeTimeoutMs: 2_000 });
    const chs = [`topo:${++n}`, `topo:${++n}`];
    for (const ch of chs) { bus.watch(ch); await bus.head(ch); }
    await cutSubscribers(a);
    await until(() => chs.every((ch) => bus.placement(ch)?.live === true) && (bus as unknown as { probes: Map<string, unknown> }).probes.size === 0, 'resubscribed and probed');
    const c = await publishOn(pub, chs[1]!, 1);
    await until(() => got.events.length === 1, 'live event');
    expect(got.events.map((e) => e.cursor)).toEqual([c]);
    expect(bus.probesMissed).toBe(0);
  });
});
