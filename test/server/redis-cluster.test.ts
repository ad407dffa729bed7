// Tidings on a real Redis Cluster (Debian's redis-server, 3 primaries + 3
// replicas on loopback, redis-cli --cluster create): two Tidings nodes, what
// users see over WebSocket and HTTP while shards serve, fail over and move.
//
// The count that matters in every scenario: events acknowledged with 200 that
// a subscriber neither received nor got a `reset` covering. It must be 0.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import calculateSlot from 'cluster-key-slot';
import { compareCursors, liveKey, parseCursor } from '../../server/pubsub/redis-scripts.js';
import type { RedisBus } from '../../server/pubsub/redis-bus.js';
import { TEST_PUBLISHER_KEY } from '../support/context.js';
import { createLogger } from '../../server/log.js';
import { startCluster, type TestCluster } from '../support/redis-cluster.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { subscribe, type Msg, type WsClient } from '../support/ws-client.js';

const FIGURES = process.env['TIDINGS_CLUSTER_FIGURES'] === '1';

/** Wait for a condition driven by real I/O: no fixed sleeps. */
async function until(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function publish(s: TestServer, channel: string, data: unknown): Promise<{ status: number; cursor?: string; retryAfter: string | null; error?: string }> {
  const res = await fetch(`${s.url}/v1/publish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TEST_PUBLISHER_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ channel, data }),
    // The server answers within TIDINGS_PUBLISH_TIMEOUT_MS; a publish hanging past this is a bug to see.
    signal: AbortSignal.timeout(10_000),
  });
  const body = (await res.json().catch(() => ({}))) as { cursor?: string; error?: string };
  return { status: res.status, cursor: body.cursor, retryAfter: res.headers.get('retry-after'), error: body.error };
}

/** k <= r in the channel's order (an epoch change sorts later). */
const atOrBefore = (k: string, r: string): boolean => {
  const a = parseCursor(k);
  const b = parseCursor(r);
  return !!a && !!b && compareCursors(a, b) <= 0;
};

interface Recorder {
  channel: string;
  c: WsClient;
  /** Every message with its arrival time. */
  log: { t: number; m: Msg }[];
  head: string;
}

async function record(s: TestServer, channel: string, cursor: string | null = null): Promise<Recorder> {
  const { c, welcome } = await subscribe(s.wsUrl, await s.token([channel]), { [channel]: cursor });
  const log: { t: number; m: Msg }[] = [];
  // Messages already queued by the helper (a replay right after welcome), then live ones.
  for (const m of c.queue.splice(0)) log.push({ t: Date.now(), m });
  c.ws.on('message', () => { for (const m of c.queue.splice(0)) log.push({ t: Date.now(), m }); });
  return { channel, c, log, head: (welcome.channels as Record<string, string>)[channel]! };
}

interface Acked { channel: string; cursor: string; t: number }

/** Acked events a recorder neither received nor got a covering reset for; duplicates; order breaks. */
function audit(r: Recorder, acked: Acked[]): { lost: string[]; duplicates: number; disorder: number; resets: number } {
  const events = r.log.filter((x) => x.m.type === 'event').map((x) => x.m.cursor as string);
  const resets = r.log.filter((x) => x.m.type === 'reset').map((x) => x.m.cursor as string);
  const got = new Set(events);
  const lost = acked
    .filter((a) => a.channel === r.channel && !atOrBefore(a.cursor, r.head))
    .filter((a) => !got.has(a.cursor) && !resets.some((h) => atOrBefore(a.cursor, h)))
    .map((a) => a.cursor);
  let disorder = 0;
  let last: string | null = null;
  for (const x of r.log) {
    const cur = x.m.cursor as string;
    if (x.m.type === 'reset') { last = cur; continue; }
    if (x.m.type !== 'event') continue;
    if (last !== null && atOrBefore(cur, last)) disorder++;
    last = cur;
  }
  return { lost, duplicates: events.length - got.size, disorder, resets: resets.length };
}

/** Wait until every recorder has its channel's last acknowledged event (or a reset covering it). */
async function untilLastDelivered(recs: Recorder[], acked: Acked[]): Promise<void> {
  const lastOf = (ch: string) => acked.filter((a) => a.channel === ch).at(-1)?.cursor;
  const has = (r: Recorder) => {
    const last = lastOf(r.channel);
    return last === undefined || r.log.some((x) => x.m.cursor === last || (x.m.type === 'reset' && atOrBefore(last, x.m.cursor as string)));
  };
  try {
    await until(() => recs.every(has), 'the last event of every channel on every subscriber');
  } catch (err) {
    for (const r of recs.filter((x) => !has(x))) {
      const placement = nodes.map((s) => (s.ctx.bus as RedisBus).placement(r.channel));
      console.log(`missing on ${r.channel}: last acked ${lastOf(r.channel)}, last received ${JSON.stringify(r.log.at(-1)?.m)}, ws ${r.c.ws.readyState}, placement ${JSON.stringify(placement)}`);
      const subs: string[] = [];
      for (const x of await cluster.nodes().catch(() => [])) {
        if (x.failed) continue;
        const a = cluster.admin(x.port);
        try { subs.push(`${x.port}(${x.role}):${JSON.stringify(await a.call('PUBSUB', 'SHARDNUMSUB', liveKey(r.channel)))}`); } catch (e) { subs.push(`${x.port}: ${(e as Error).message}`); } finally { a.disconnect(); }
      }
      console.log(`  subscriptions: ${subs.join(' ')}`);
      for (const s of nodes) {
        const bus = s.ctx.bus as unknown as { shards: Map<string, { key: string; channels: Set<string>; conn: { status: string; condition?: { subscriber?: false | { channels(t: string): string[] } } } }> };
        console.log(`  shards: ${[...bus.shards.values()].map((sh) => `${sh.key} ${sh.conn.status} ours=[${[...sh.channels].join(',')}] ioredis=[${sh.conn.condition?.subscriber ? sh.conn.condition.subscriber.channels('ssubscribe').join(',') : '-'}]`).join(' | ')}`);
      }
    }
    throw err;
  }
}

/** Longest silence of a recorder between `from` and `to` (ms), given a steady publisher. */
function longestGap(r: Recorder, from: number, to: number): number {
  const ts = [from, ...r.log.map((x) => x.t).filter((t) => t >= from && t <= to), to];
  let max = 0;
  for (let i = 1; i < ts.length; i++) max = Math.max(max, ts[i]! - ts[i - 1]!);
  return max;
}

/**
 * One publisher per channel, alternating nodes, each as fast as its answers
 * come, until stopped: a channel whose shard is failing over does not hold up
 * the others (as independent backends would not).
 */
function pump(nodes: TestServer[], channels: string[]) {
  const acked: Acked[] = [];
  const refused: { status: number; retryAfter: string | null; error?: string }[] = [];
  let stop = false;
  const done = Promise.all(channels.map(async (channel) => {
    for (let i = 0; !stop; i++) {
      const node = nodes[i % nodes.length]!;
      // A connection the node closed without an answer counts as refused (status 0): never acked.
      const r = await publish(node, channel, { i }).catch((err: Error) => ({ status: 0, retryAfter: null, error: err.message, cursor: undefined }));
      if (r.status === 200) acked.push({ channel, cursor: r.cursor!, t: Date.now() });
      else refused.push(r);
    }
  }));
  return { acked, refused, stop: async () => { stop = true; await done; } };
}

let cluster: TestCluster;
let nodes: TestServer[] = [];
const clients: WsClient[] = [];
let n = 0;

/** A fresh channel name whose slot the primary on `port` owns. */
async function channelOn(port: number): Promise<string> {
  // Slots as the cluster says now, names tried locally: a primary may own a single
  // slot (one that joined by resharding), 1 name in 16,384 on average.
  const node = (await cluster.nodes()).find((x) => x.port === port && x.role === 'master' && !x.failed);
  if (!node || node.slots.length === 0) throw new Error(`${port} owns no slots: ${JSON.stringify(await cluster.nodes())}`);
  for (let i = 0; i < 1_000_000; i++) {
    const ch = `cl:${++n}`;
    const slot = calculateSlot(liveKey(ch));
    if (node.slots.some(([lo, hi]) => slot >= lo && slot <= hi)) return ch;
  }
  throw new Error(`no channel name found for the slots of ${port}`);
}

async function primaries(): Promise<number[]> {
  return (await cluster.nodes()).filter((x) => x.role === 'master' && !x.failed && x.slots.length > 0).map((x) => x.port).sort();
}

async function primariesWithReplica(): Promise<number[]> {
  const all = await cluster.nodes();
  const size = (x: { slots: [number, number][] }) => x.slots.reduce((t, [lo, hi]) => t + hi - lo + 1, 0);
  // Largest shards first: a primary that joined by resharding owns one slot, and a
  // replica may have migrated to it (cluster-allow-replica-migration).
  return all.filter((x) => x.role === 'master' && !x.failed && x.slots.length > 0
    && all.some((y) => y.role === 'slave' && !y.failed && y.primaryId === x.id)).sort((x, y) => size(y) - size(x)).map((x) => x.port);
}

async function rec(s: TestServer, channel: string, cursor: string | null = null): Promise<Recorder> {
  const r = await record(s, channel, cursor);
  clients.push(r.c);
  return r;
}

beforeAll(async () => {
  cluster = await startCluster();
  nodes = [
    await startTestServer({ redisCluster: cluster.seeds.slice(0, 2) }, { log: createLogger({ level: process.env['TIDINGS_TEST_LOG'] ?? 'silent' }).child({ tnode: 'A' }) }),
    await startTestServer({ redisCluster: cluster.seeds.slice(2, 4) }, { log: createLogger({ level: process.env['TIDINGS_TEST_LOG'] ?? 'silent' }).child({ tnode: 'B' }) }),
  ];
}, 60_000);

afterAll(async () => {
  for (const c of clients.splice(0)) c.ws.terminate();
  await Promise.all(nodes.map((s) => s.close()));
  await cluster?.stop();
});

describe('Tidings on a Redis Cluster', { timeout: 60_000 }, () => {
  it('loads the function library on every primary, and again on a primary that lost it', async () => {
    const ports = await primaries();
    expect(ports).toHaveLength(3);
    for (const port of ports) {
      const a = cluster.admin(port);
      try {
        const libs = (await a.call('FUNCTION', 'LIST', 'LIBRARYNAME', 'tidings')) as unknown[];
        expect(libs.length, `library on ${port}`).toBe(1);
      } finally { a.disconnect(); }
    }
    // A primary without it (a new or flushed node): the publish reloads it there and succeeds.
    const victim = ports[1]!;
    const a = cluster.admin(victim);
    try { await a.call('FUNCTION', 'DELETE', 'tidings'); } finally { a.disconnect(); }
    const ch = await channelOn(victim);
    const r = await publish(nodes[0]!, ch, 'after delete');
    expect(r.status).toBe(200);
  });

  it('delivers publishes from either node to subscribers on both, in order, with channels on every shard and live traffic only on the owning shard', async () => {
    const ports = await primaries();
    const channels = [await channelOn(ports[0]!), await channelOn(ports[1]!), await channelOn(ports[2]!)];
    const recs: Recorder[] = [];
    for (const ch of channels) for (const s of nodes) recs.push(await rec(s, ch));
    // Each channel is subscribed on its owner only, once per Tidings node (sharded Pub/Sub).
    for (const [i, ch] of channels.entries()) {
      for (const port of ports) {
        const a = cluster.admin(port);
        try {
          const [, count] = (await a.call('PUBSUB', 'SHARDNUMSUB', liveKey(ch))) as [string, number];
          expect(count, `${ch} on ${port}`).toBe(port === ports[i] ? 2 : 0);
        } finally { a.disconnect(); }
      }
      for (const s of nodes) expect((s.ctx.bus as RedisBus).placement(ch)).toEqual({ shard: `127.0.0.1:${ports[i]}`, live: true });
    }
    const acked: Acked[] = [];
    for (let i = 0; i < 30; i++) {
      const ch = channels[i % 3]!;
      const r = await publish(nodes[i % 2]!, ch, { i });
      expect(r.status).toBe(200);
      acked.push({ channel: ch, cursor: r.cursor!, t: Date.now() });
    }
    // One batch across all shards: one cursor per event, each delivered.
    const batch = await fetch(`${nodes[1]!.url}/v1/publish`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_PUBLISHER_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ events: channels.map((channel) => ({ channel, data: 'batch' })) }),
    });
    expect(batch.status).toBe(200);
    const { cursors } = (await batch.json()) as { cursors: string[] };
    channels.forEach((channel, i) => acked.push({ channel, cursor: cursors[i]!, t: Date.now() }));
    await until(() => recs.every((r) => r.log.length === 11), 'every event on every subscriber');
    for (const r of recs) {
      expect(r.log.map((x) => x.m.cursor)).toEqual(acked.filter((a) => a.channel === r.channel).map((a) => a.cursor));
      expect(audit(r, acked)).toEqual({ lost: [], duplicates: 0, disorder: 0, resets: 0 });
    }
  });

  it('resumes on the other node from a cursor the first one gave, without reset', async () => {
    const [port] = await primaries();
    const ch = await channelOn(port!);
    const first = await rec(nodes[0]!, ch);
    const c1 = (await publish(nodes[0]!, ch, 1)).cursor!;
    await until(() => first.log.length === 1, 'first event');
    first.c.ws.close();
    const missed = [(await publish(nodes[1]!, ch, 2)).cursor!, (await publish(nodes[0]!, ch, 3)).cursor!];
    const again = await rec(nodes[1]!, ch, c1);
    await until(() => again.log.length === 2, 'replay');
    expect(again.log.map((x) => [x.m.type, x.m.cursor])).toEqual(missed.map((c) => ['event', c]));
    const live = (await publish(nodes[0]!, ch, 4)).cursor!;
    await until(() => again.log.length === 3, 'live');
    expect(again.log[2]!.m.cursor).toBe(live);
  });

  it('keeps its subscriber connections across idle moments: a returning subscriber costs 4 Redis commands, a new one 3', async () => {
    const ports = await primaries();
    // Top-level commands Tidings sends for a subscriber (commandstats also counts those a function runs).
    const counted = ['fcall', 'ssubscribe', 'sunsubscribe'];
    /** Ids of the subscriber connections on every primary: a new one means a connection set-up per subscriber. */
    const subscriberConnections = async (): Promise<string[]> => {
      const ids: string[] = [];
      for (const port of ports) {
        const a = cluster.admin(port);
        try {
          const list = String(await a.call('CLIENT', 'LIST'));
          for (const m of list.matchAll(/^id=(\d+) .*name=tidings-sub/gm)) ids.push(`${port}:${m[1]}`);
        } finally { a.disconnect(); }
      }
      return ids.sort();
    };
    const sent = async (): Promise<number> => {
      let t = 0;
      for (const port of ports) {
        const a = cluster.admin(port);
        try {
          const info = await a.info('commandstats');
          for (const m of info.matchAll(/cmdstat_([a-z|]+):calls=(\d+)/g)) if (counted.includes(m[1]!)) t += Number(m[2]);
        } finally { a.disconnect(); }
      }
      return t;
    };
    const N = 30;
    const chs = Array.from({ length: N }, () => `ret:${++n}`);
    const cursors: string[] = [];
    for (const ch of chs) cursors.push((await publish(nodes[0]!, ch, 1)).cursor!);
    for (const ch of chs) await publish(nodes[0]!, ch, 2);
    const one = async (ch: string, cursor: string | null) => {
      const { c } = await subscribe(nodes[1]!.wsUrl, await nodes[1]!.token([ch]), { [ch]: cursor });
      if (cursor !== null) await c.next(5_000); // the replayed event
      c.ws.close();
      await c.closed;
      await until(() => (nodes[1]!.ctx.bus as RedisBus).watchers(ch) === 0, 'unwatched');
    };
    // Warm: a subscriber connection to every primary exists (its set-up is counted once, not per subscriber).
    for (const port of ports) await one(await channelOn(port), null);
    const connections = await subscriberConnections();
    expect(connections.length).toBeGreaterThanOrEqual(ports.length);
    let t0 = await sent();
    for (const [i, ch] of chs.entries()) await one(ch, cursors[i]!);
    const returning = ((await sent()) - t0) / N;
    t0 = await sent();
    for (const ch of chs) await one(ch, null);
    const fresh = ((await sent()) - t0) / N;
    if (FIGURES) console.log(`[figures] Redis commands per subscriber (subscribe, welcome, leave): returning ${returning.toFixed(2)}, new ${fresh.toFixed(2)}`);
    // SSUBSCRIBE, the head read that starts the watch, the replay read, SUNSUBSCRIBE; a new subscriber needs no replay.
    expect(returning).toBeLessThanOrEqual(4.05);
    expect(fresh).toBeLessThanOrEqual(3.05);
    // The same connections served them all.
    expect(await subscriberConnections()).toEqual(connections);
  });

  it('reads the heads of new channels in one FCALL per slot (keys of one call share a slot), and every one goes live', async () => {
    const ports = await primaries();
    const bus = nodes[1]!.ctx.bus as RedisBus;
    // Two names of one slot (found locally), one of a slot on another primary.
    const a1 = await channelOn(ports[0]!);
    const slot = calculateSlot(liveKey(a1));
    let a2 = '';
    for (let i = 0; !a2; i++) { const ch = `same:${n}:${i}`; if (calculateSlot(liveKey(ch)) === slot) a2 = ch; }
    const b = await channelOn(ports[1]!);
    const fcalls = async (): Promise<number> => {
      let t = 0;
      for (const port of ports) {
        const a = cluster.admin(port);
        try { t += Number(/^cmdstat_fcall:calls=(\d+)/m.exec(await a.info('commandstats'))?.[1] ?? 0); } finally { a.disconnect(); }
      }
      return t;
    };
    const f0 = await fcalls();
    for (const ch of [a1, a2, b]) bus.watch(ch);
    try {
      const heads = await Promise.all([a1, a2, b].map((ch) => bus.head(ch)));
      for (const h of heads) expect(h).toMatch(/^[0-9a-z]+\.0-0$/);
      // Without batching: 3; one call across slots: refused CROSSSLOT (and no head at all).
      expect((await fcalls()) - f0).toBe(2);
      const got: string[] = [];
      const prev = bus.onEvent;
      bus.onEvent = (e) => { got.push(e.cursor); prev?.(e); };
      try {
        const cursors: string[] = [];
        for (const ch of [a1, a2, b]) cursors.push((await publish(nodes[0]!, ch, 1)).cursor!);
        await until(() => cursors.every((c) => got.includes(c)), 'an event on each new channel');
      } finally {
        bus.onEvent = prev;
      }
    } finally {
      for (const ch of [a1, a2, b]) bus.unwatch(ch);
    }
  });

  it('moves a slot to another primary while events flow: subscribers follow it, nothing acknowledged is lost', async () => {
    const ports = await primaries();
    const channels = [await channelOn(ports[0]!), await channelOn(ports[0]!), await channelOn(ports[1]!)];
    const moving = channels[0]!;
    const slot = calculateSlot(liveKey(moving));
    const recs: Recorder[] = [];
    for (const ch of channels) for (const s of nodes) recs.push(await rec(s, ch));
    const p = pump(nodes, channels);
    await until(() => p.acked.length > 60, 'traffic before the move');
    const movedAt = Date.now();
    await cluster.moveSlot(slot, ports[2]!);
    const movedIn = Date.now() - movedAt;
    const countAt = p.acked.length;
    await until(() => p.acked.filter((a) => a.channel === moving).length > (countAt / 3) + 40, 'traffic after the move');
    await p.stop();
    await untilLastDelivered(recs, p.acked);
    await until(() => nodes.every((s) => (s.ctx.bus as RedisBus).placement(moving)?.shard === `127.0.0.1:${ports[2]}`), 'subscription follows the slot');
    const audits = recs.map((r) => audit(r, p.acked));
    const gap = Math.max(...recs.filter((r) => r.channel === moving).map((r) => longestGap(r, movedAt, Date.now())));
    if (FIGURES) console.log(`[figures] reshard: slot moved in ${movedIn} ms, ${p.acked.length} acked, ${p.refused.length} refused, longest silence on the moved channel ${gap} ms, resets ${audits.reduce((s, a) => s + a.resets, 0)}`);
    for (const [i, a] of audits.entries()) {
      if (a.lost.length) console.log(recs[i]!.channel, recs[i]!.channel === moving, a, recs[i]!.log.map((x) => `${x.m.type}:${x.m.cursor}`).join(' '), p.acked.filter((x) => x.channel === recs[i]!.channel).map((x) => x.cursor).join(' '));
    }
    for (const a of audits) expect(a).toMatchObject({ lost: [], duplicates: 0, disorder: 0 });
    for (const r of p.refused) expect(r).toMatchObject({ status: 503, error: 'bus_unavailable' });
  });

  it('loads the library on a primary that joins by resharding, and moves the subscriptions of its slot there', async () => {
    const [from] = await primaries();
    const ch = await channelOn(from!);
    const recs = [await rec(nodes[0]!, ch), await rec(nodes[1]!, ch)];
    const before = (await publish(nodes[0]!, ch, 'before')).cursor!;
    const fresh = await cluster.addNode();
    const a = cluster.admin(fresh);
    try {
      expect((await a.call('FUNCTION', 'LIST')) as unknown[]).toEqual([]);
      await cluster.moveSlot(calculateSlot(liveKey(ch)), fresh);
      // The first publish there finds no library (Function not found), loads it, and succeeds.
      const after = await publish(nodes[1]!, ch, 'after');
      expect(after.status).toBe(200);
      expect(((await a.call('FUNCTION', 'LIST', 'LIBRARYNAME', 'tidings')) as unknown[]).length).toBe(1);
      await until(() => recs.every((r) => r.log.some((x) => x.m.cursor === after.cursor)), 'the event published on the new primary');
      for (const r of recs) {
        expect(r.log.map((x) => [x.m.type, x.m.cursor])).toEqual([['event', before], ['event', after.cursor]]);
      }
      await until(() => nodes.every((s) => (s.ctx.bus as RedisBus).placement(ch)?.shard === `127.0.0.1:${fresh}`), 'subscriptions on the new primary');
    } finally {
      a.disconnect();
    }
  });

  it('answers reset to a cursor the failover lost, and 503 (never 200) to a publish no replica acknowledged', async () => {
    const victim = (await primariesWithReplica())[0]!;
    const ch = await channelOn(victim);
    const watcher = await rec(nodes[1]!, ch);
    const kept = (await publish(nodes[0]!, ch, 'replicated')).cursor!;
    await until(() => watcher.log.length === 1, 'replicated event');
    // Freeze the victim's replica and cut its replication link: the next event
    // reaches the primary (and the live subscribers) but never the replica,
    // which the cluster still counts (not flagged failed yet) and will promote.
    // Its publisher must not hear 200.
    const all = await cluster.nodes();
    const replica = all.find((x) => x.role === 'slave' && x.primaryId === all.find((y) => y.port === victim)!.id)!;
    // The replica must not be flagged failed while it is frozen (then, by design, it
    // would stop counting and the publish would be acknowledged): a long node
    // timeout for that moment, whatever the machine's load.
    await cluster.configAll('cluster-node-timeout', '20000');
    cluster.signal(replica.port, 'SIGSTOP');
    const va = cluster.admin(victim);
    try { await va.call('CLIENT', 'KILL', 'TYPE', 'replica'); } finally { va.disconnect(); }
    const started = Date.now();
    const unreplicated = await publish(nodes[0]!, ch, 'lost in the failover');
    expect(unreplicated.status).toBe(503);
    expect(Number(unreplicated.retryAfter)).toBeGreaterThanOrEqual(1);
    expect(Date.now() - started).toBeLessThan(6_000);
    await until(() => watcher.log.length === 2, 'the unreplicated event delivered live');
    const lostCursor = watcher.log[1]!.m.cursor as string;
    // The primary dies; the replica wakes up without that event and takes over.
    await cluster.kill(victim);
    cluster.signal(replica.port, 'SIGCONT');
    await cluster.configAll('cluster-node-timeout', '1000');
    await cluster.waitHealthy(30_000);
    expect(await cluster.ownerOf(calculateSlot(liveKey(ch)))).toBe(replica.port);
    const after = await (async () => {
      for (;;) {
        const r = await publish(nodes[0]!, ch, 'after the failover');
        if (r.status === 200) return r.cursor!;
        await new Promise((res) => setTimeout(res, 100));
      }
    })();
    // The live subscriber whose last event vanished: a reset, then what follows.
    await until(() => watcher.log.some((x) => x.m.cursor === after), 'event after the failover');
    const types = watcher.log.slice(2).map((x) => x.m.type);
    expect(types).toContain('reset');
    // The reset comes first; its head may already be that event (then it covers it).
    expect(watcher.log.findIndex((x) => x.m.type === 'reset')).toBeLessThanOrEqual(watcher.log.findIndex((x) => x.m.cursor === after));
    // A client resuming from the lost cursor on either node, after newer IDs exist: reset, not a replay.
    for (const s of nodes) {
      const late = await rec(s, ch, lostCursor);
      await until(() => late.log.length >= 1, 'first message of the late client');
      expect(late.log[0]!.m).toMatchObject({ type: 'reset', channel: ch });
    }
    // The replicated event's cursor still resumes.
    const back = await rec(nodes[0]!, ch, kept);
    await until(() => back.log.some((x) => x.m.cursor === after), 'resume from a surviving cursor');
    expect(back.log.every((x) => x.m.type === 'event')).toBe(true);
  });
});

describe('a primary killed while events flow', { timeout: 120_000 }, () => {
  it('loses no acknowledged event while a slot moves and a primary dies: each is delivered or covered by a reset; refused publishes answer 503 + Retry-After', async () => {
    // A primary that still has a replica (the test above used up one shard's).
    const withReplica = await primariesWithReplica();
    expect(withReplica.length).toBeGreaterThanOrEqual(1);
    const victim = withReplica[0]!;
    const others = (await primaries()).filter((p) => p !== victim);
    const onVictim = [await channelOn(victim), await channelOn(victim)];
    const channels = [...onVictim, await channelOn(others[0]!), await channelOn(others[1]!)];
    const recs: Recorder[] = [];
    for (const ch of channels) for (const s of nodes) recs.push(await rec(s, ch));
    const phases: string[] = [];
    let mark = Date.now();
    const phase = (name: string) => { phases.push(`${name} ${Date.now() - mark} ms`); mark = Date.now(); };
    const p = pump(nodes, channels);
    await until(() => p.acked.length > 100, 'traffic before the move');
    phase('traffic');
    // A slot of a healthy shard moves while events flow...
    const moving = channels[2]!;
    await cluster.moveSlot(calculateSlot(liveKey(moving)), others[1]!);
    phase('move');
    await until(() => p.acked.filter((a) => a.channel === moving).length > 60, 'traffic after the move');
    phase('traffic after the move');
    // ...then a primary dies while they still flow.
    const killedAt = Date.now();
    await cluster.kill(victim);
    // Meanwhile each node stays ready: one shard failing over hits every node alike,
    // and taking them all out of rotation would make it a full outage.
    const probes: string[] = [];
    const bus = nodes[0]!.ctx.bus as RedisBus;
    const probing = (async () => {
      while (Date.now() < killedAt + 2_000) {
        probes.push(`${bus.health()}/${await bus.ping(1_000)}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    })();
    await cluster.waitHealthy(30_000);
    const healthyAt = Date.now();
    phase('failover');
    await probing;
    expect(new Set(probes)).toEqual(new Set(['ok/true']));
    // Traffic keeps flowing to the promoted replica.
    const before = p.acked.filter((a) => onVictim.includes(a.channel) && a.t > healthyAt).length;
    await until(() => p.acked.filter((a) => onVictim.includes(a.channel) && a.t > healthyAt).length > before + 60, 'traffic after the failover', 20_000);
    phase('traffic after the failover');
    await p.stop();
    await untilLastDelivered(recs, p.acked);
    await until(() => nodes.every((s) => (s.ctx.bus as RedisBus).placement(moving)?.shard === `127.0.0.1:${others[1]}`), 'the moved channel subscribed on its new owner');
    phase('last deliveries');
    if (FIGURES) console.log(`[figures] phases: ${phases.join(', ')}`);
    const audits = recs.map((r) => audit(r, p.acked));
    const end = Date.now();
    const silence = Math.max(...recs.filter((r) => onVictim.includes(r.channel)).map((r) => longestGap(r, killedAt - 1_000, end)));
    const silenceOthers = Math.max(...recs.filter((r) => !onVictim.includes(r.channel)).map((r) => longestGap(r, killedAt - 1_000, end)));
    const lost = audits.reduce((s, a) => s + a.lost.length, 0);
    const resets = audits.reduce((s, a) => s + a.resets, 0);
    const duplicates = audits.reduce((s, a) => s + a.duplicates, 0);
    if (FIGURES) {
      console.log(`[figures] failover: promoted after ${healthyAt - killedAt} ms; longest silence on the failed shard's channels ${silence} ms, on other shards ${silenceOthers} ms; ${p.acked.length} acked, ${p.refused.length} refused (503), acked-then-lost ${lost}, resets ${resets}, duplicates ${duplicates}`);
    }
    expect(lost).toBe(0);
    for (const a of audits) expect(a.disorder).toBe(0);
    for (const r of p.refused) {
      expect(r).toMatchObject({ status: 503, error: 'bus_unavailable' });
      expect(Number(r.retryAfter)).toBeGreaterThanOrEqual(1);
    }
  });
});
