import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { DEFAULTS, type Config } from '../../server/config.js';
import type { StoredEvent } from '../../server/pubsub/bus.js';
import { BusUnavailableError, RedisBus, classifyPublishError, countReplicas, reconnectDelay } from '../../server/pubsub/redis-bus.js';
import { compareCursors, epochKey, liveKey, parseCursor, streamKey } from '../../server/pubsub/redis-scripts.js';
import { startRedis, type TestRedis } from '../support/redis.js';

const log = pino({ level: 'silent' });
const CURSOR = /^[0-9A-Za-z_.-]{1,64}$/;
const config = (over: Partial<Config> = {}): Config => ({ ...DEFAULTS, ...over });

/** Wait for a condition driven by real I/O (Redis round trips): no fixed sleeps. */
async function until(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 8_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function collect(bus: RedisBus): { events: StoredEvent[]; gaps: [string, string][] } {
  const out = { events: [] as StoredEvent[], gaps: [] as [string, string][] };
  bus.onEvent = (e) => out.events.push(e);
  bus.onGap = (ch, head) => out.gaps.push([ch, head]);
  return out;
}

const json = (i: number) => JSON.stringify({ i });

describe('cursors and backoff (pure)', () => {
  it('parses epoch.ms-seq cursors and rejects anything else', () => {
    expect(parseCursor('mi5x3k2p1a.1764000000500-0')).toMatchObject({ epoch: 'mi5x3k2p1a', id: '1764000000500-0' });
    for (const bad of ['', '0-0', 'x.0-0-0', 'ab.01-0', 'ab.1-01', 'AB.1-0', 'ab.1-', 'ab.-1', 'ab.1-0 ', 'a'.repeat(14) + '.1-0', 'ab.' + '1'.repeat(21) + '-0']) {
      expect(parseCursor(bad), bad).toBeNull();
    }
  });

  it('orders cursors by epoch, then ms, then seq, exactly beyond 2^53', () => {
    const c = (s: string) => parseCursor(s)!;
    expect(compareCursors(c('a.2-0'), c('a.10-0'))).toBeLessThan(0);
    expect(compareCursors(c('a.10-2'), c('a.10-10'))).toBeLessThan(0);
    expect(compareCursors(c('b.1-0'), c('a.99-0'))).toBeGreaterThan(0);
    expect(compareCursors(c('9.1-0'), c('a.1-0'))).toBeLessThan(0);
    expect(compareCursors(c('a.1-18446744073709551615'), c('a.1-18446744073709551614'))).toBeGreaterThan(0);
    expect(compareCursors(c('a.5-5'), c('a.5-5'))).toBe(0);
  });

  it('backs off exponentially with jitter inside [base/2, cap], never zero', () => {
    expect(reconnectDelay(1, 100, 3000, () => 0)).toBe(50);
    expect(reconnectDelay(1, 100, 3000, () => 1)).toBe(100);
    expect(reconnectDelay(4, 100, 3000, () => 1)).toBe(800);
    expect(reconnectDelay(50, 100, 3000, () => 1)).toBe(3000);
    expect(reconnectDelay(50, 100, 3000, () => 0)).toBe(50);
    let seed = 7;
    const lcg = () => ((seed = (seed * 48271) % 2147483647) / 2147483647);
    for (let a = 1; a < 40; a++) {
      const d = reconnectDelay(a, 100, 3000, lcg);
      expect(d).toBeGreaterThanOrEqual(50);
      expect(d).toBeLessThanOrEqual(3000);
    }
  });
});

describe('cluster publish decisions (pure)', () => {
  const reply = (message: string) => Object.assign(new Error(message), { name: 'ReplyError' });

  it('retries only what Redis refused before running it; a lost connection is never re-sent', () => {
    expect(classifyPublishError(reply('MOVED 3999 127.0.0.1:7001'))).toBe('moved');
    expect(classifyPublishError(reply('ASK 3999 127.0.0.1:7002'))).toBe('ask');
    for (const m of ['TRYAGAIN Multiple keys request during rehashing of slot', 'CLUSTERDOWN The cluster is down', 'LOADING Redis is loading', 'MASTERDOWN Link with MASTER is down']) {
      expect(classifyPublishError(reply(m)), m).toBe('retry');
    }
    expect(classifyPublishError(reply('ERR Function not found'))).toBe('noscript');
    for (const m of ['BADCHANNEL channel must match', 'BADJSON data must be JSON text', 'BADTTL ttl', 'BADKEY keys']) expect(classifyPublishError(reply(m))).toBe('refused');
    // Not a reply: the command may or may not have run.
    expect(classifyPublishError(new Error('Connection is closed.'))).toBe('unknown');
    expect(classifyPublishError(new Error('Command timed out'))).toBe('unknown');
    expect(classifyPublishError(reply('ERR something else'))).toBe('unknown');
  });

  it('counts the replicas the cluster has not flagged failed (a suspected one still counts)', () => {
    const line = (flags: string) => `07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004 ${flags} e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected`;
    expect(countReplicas('')).toBe(0);
    expect(countReplicas(line('slave') + '\n')).toBe(1);
    expect(countReplicas([line('slave'), line('slave,fail?')].join('\n'))).toBe(2);
    expect(countReplicas([line('slave'), line('slave,fail')].join('\n'))).toBe(1);
    expect(countReplicas(line('myself,slave,fail'))).toBe(0);
  });
});

describe('RedisBus against a real redis-server', () => {
  let redis: TestRedis;
  const buses: RedisBus[] = [];
  let n = 0;
  const channel = () => `t:${++n}`;
  const open = async (over: Partial<Config> = {}) => {
    const b = await RedisBus.connect(redis.url, config(over), log, { backoffCapMs: 200 });
    buses.push(b);
    return b;
  };

  beforeAll(async () => { redis = await startRedis(); });
  afterEach(async () => { await Promise.all(buses.splice(0).map((b) => b.close())); });
  afterAll(async () => { await redis?.stop(); });

  it('gives a never-published channel a head that is a valid cursor and a valid resume point', async () => {
    const bus = await open();
    const ch = channel();
    const head = await bus.head(ch);
    expect(head).toMatch(CURSOR);
    expect(head.endsWith('.0-0')).toBe(true);
    expect(await bus.readAfter(ch, head)).toEqual({ kind: 'events', events: [] });
    const [c1] = await bus.publish([{ channel: ch, json: json(1) }]);
    expect(await bus.readAfter(ch, head)).toEqual({ kind: 'events', events: [{ channel: ch, cursor: c1, json: json(1) }] });
  });

  it('publishes in order and replays every event after a cursor', async () => {
    const bus = await open();
    const ch = channel();
    const cursors: string[] = [];
    for (let i = 0; i < 10; i++) cursors.push(...(await bus.publish([{ channel: ch, json: json(i) }])));
    for (const c of cursors) expect(c).toMatch(CURSOR);
    for (let i = 1; i < cursors.length; i++) expect(bus.isAfter(cursors[i]!, cursors[i - 1]!)).toBe(true);
    expect(await bus.head(ch)).toBe(cursors[9]);
    const r = await bus.readAfter(ch, cursors[3]!);
    expect(r.kind).toBe('events');
    if (r.kind === 'events') expect(r.events.map((e) => e.json)).toEqual([4, 5, 6, 7, 8, 9].map(json));
    expect(await bus.readAfter(ch, cursors[9]!)).toEqual({ kind: 'events', events: [] });
  });

  it('publishes a batch in order and returns one cursor per event', async () => {
    const bus = await open();
    const [a, b] = [channel(), channel()];
    const cursors = await bus.publish([
      { channel: a, json: json(1) }, { channel: b, json: json(2) }, { channel: a, json: json(3) },
    ]);
    expect(cursors).toHaveLength(3);
    const r = await bus.readAfter(a, (await bus.head(a)).replace(/\..*/, '.0-0'));
    expect(r).toEqual({ kind: 'events', events: [{ channel: a, cursor: cursors[0], json: json(1) }, { channel: a, cursor: cursors[2], json: json(3) }] });
  });

  it('answers reset with the head for a malformed cursor, a cursor ahead of the head, or another epoch', async () => {
    const bus = await open();
    const ch = channel();
    const [c] = await bus.publish([{ channel: ch, json: json(1) }]);
    const epoch = c!.split('.')[0]!;
    for (const bad of ['garbage', '', 'x'.repeat(65), `${epoch}.99999999999999-0`, `zzzzzzzzzz.1-0`, `${epoch}.01-0`]) {
      expect(await bus.readAfter(ch, bad), bad).toEqual({ kind: 'reset', head: c });
    }
  });

  it('keeps at least TIDINGS_HISTORY events: every cursor among the last N resumes, older ones reset', async () => {
    const history = 5;
    const bus = await open({ history });
    const ch = channel();
    const zero = await bus.head(ch);
    const cursors: string[] = [];
    for (let i = 0; i < 5; i++) cursors.push(...(await bus.publish([{ channel: ch, json: json(i) }])));
    // At the limit: exactly N published, nothing trimmed, even the empty-channel head resumes.
    expect(await bus.readAfter(ch, zero)).toMatchObject({ kind: 'events', events: cursors.map((cursor) => ({ cursor })) });
    // Past the limit: approximate trimming (whole stream nodes of 100) must have dropped old entries.
    for (let i = 5; i < 400; i++) cursors.push(...(await bus.publish([{ channel: ch, json: json(i) }])));
    expect(await bus.readAfter(ch, zero)).toEqual({ kind: 'reset', head: cursors.at(-1) });
    expect(await bus.readAfter(ch, cursors[0]!)).toEqual({ kind: 'reset', head: cursors.at(-1) });
    for (let k = 1; k <= history; k++) {
      const r = await bus.readAfter(ch, cursors[cursors.length - 1 - k]!);
      expect(r.kind).toBe('events');
      if (r.kind === 'events') expect(r.events.map((e) => e.cursor)).toEqual(cursors.slice(-k));
    }
  });

  it('answers reset when an event after the cursor was deleted (XDEL)', async () => {
    const bus = await open();
    const ch = channel();
    const cs = await bus.publish([1, 2, 3].map((i) => ({ channel: ch, json: json(i) })));
    const admin = new Redis(redis.url);
    await admin.xdel(streamKey(ch), cs[1]!.split('.')[1]!);
    admin.disconnect();
    expect(await bus.readAfter(ch, cs[0]!)).toEqual({ kind: 'reset', head: cs[2] });
    expect(await bus.readAfter(ch, cs[1]!)).toMatchObject({ kind: 'events', events: [{ cursor: cs[2] }] });
  });

  it('answers reset for a cursor whose entry is gone although newer IDs exist (what a failover leaves behind)', async () => {
    const bus = await open();
    const ch = channel();
    const cs = await bus.publish([1, 2, 3].map((i) => ({ channel: ch, json: json(i) })));
    const id = (c: string) => c.split('.')[1]!;
    // A promoted replica that never got event 3 (asynchronous replication),
    // then took new writes: its stream has 1, 2 and an ID after 3, and no XDEL trace.
    const admin = new Redis(redis.url);
    const entries = (await admin.xrange(streamKey(ch), '-', '+')).slice(0, 2);
    await admin.del(streamKey(ch));
    for (const [eid, fields] of entries) await admin.xadd(streamKey(ch), eid, ...fields);
    admin.disconnect();
    const [c4] = await bus.publish([{ channel: ch, json: json(4) }]);
    expect(bus.isAfter(c4!, cs[2]!)).toBe(true);
    expect(id(c4!) > id(cs[2]!) || id(c4!).length > id(cs[2]!).length).toBe(true);
    // The client holding event 3 cannot be told "only 4 followed": 3 never existed here.
    expect(await bus.readAfter(ch, cs[2]!)).toEqual({ kind: 'reset', head: c4 });
    // Cursors of surviving entries still resume (and see 4 after 2).
    expect(await bus.readAfter(ch, cs[1]!)).toMatchObject({ kind: 'events', events: [{ cursor: c4 }] });
  });

  it('gives each channel its own epoch: losing the keys of one channel resets that channel only', async () => {
    const bus = await open();
    const [a, b] = [channel(), channel()];
    const [ca] = await bus.publish([{ channel: a, json: json(1) }]);
    const [cb] = await bus.publish([{ channel: b, json: json(1) }]);
    const admin = new Redis(redis.url);
    await admin.del(streamKey(a), epochKey(a));
    admin.disconnect();
    expect((await bus.readAfter(a, ca!)).kind).toBe('reset');
    expect(await bus.readAfter(b, cb!)).toEqual({ kind: 'events', events: [] });
  });

  it('sets TIDINGS_HISTORY_TTL_S on both keys of a channel at every publish, and none with 0', async () => {
    const admin = new Redis(redis.url);
    try {
      const ch = channel();
      const week = await open({ historyTtlS: 3600 });
      await week.head(ch);
      expect(await admin.ttl(epochKey(ch))).toBeGreaterThan(3590);
      await week.publish([{ channel: ch, json: json(1) }]);
      for (const k of [streamKey(ch), epochKey(ch)]) expect(await admin.ttl(k), k).toBeGreaterThan(3590);
      const forever = await open({ historyTtlS: 0 });
      await forever.publish([{ channel: ch, json: json(2) }]);
      for (const k of [streamKey(ch), epochKey(ch)]) expect(await admin.ttl(k), k).toBe(-1);
      await expect(admin.fcall('tidings_publish', 2, streamKey(ch), epochKey(ch), ch, '1', '10', '-1')).rejects.toThrow(/^BADTTL/);
    } finally {
      admin.disconnect();
    }
  });

  /** Calls of one command so far (INFO commandstats counts calls made inside functions too). */
  async function calls(admin: Redis, cmd: string): Promise<number> {
    const info = await admin.info('commandstats');
    const m = new RegExp(`^cmdstat_${cmd}:calls=(\\d+)`, 'm').exec(info);
    return m ? Number(m[1]) : 0;
  }

  it('subscribes the channels watched in one turn of the event loop with ONE SSUBSCRIBE and reads their heads with ONE FCALL (single Redis), and answers a watched head without a round trip', async () => {
    const bus = await open();
    const admin = new Redis(redis.url);
    try {
      const names = Array.from({ length: 100 }, () => channel());
      const sub0 = await calls(admin, 'ssubscribe');
      const fcall0 = await calls(admin, 'fcall');
      for (const ch of names) bus.watch(ch);
      const heads = await Promise.all(names.map((ch) => bus.head(ch)));
      expect(await calls(admin, 'ssubscribe')).toBe(sub0 + 1);
      // The heads of the batch in one tidings_heads call when the watches begin; the hello's head() reuses them.
      expect(await calls(admin, 'fcall')).toBe(fcall0 + 1);
      for (const h of heads) expect(h).toMatch(/\.0-0$/);
      // A live watched channel's head follows the events it delivers.
      const [c] = await bus.publish([{ channel: names[0]!, json: json(1) }]);
      await until(async () => (await bus.head(names[0]!)) === c, 'head follows the live event');
      const f1 = await calls(admin, 'fcall');
      expect(await bus.head(names[0]!)).toBe(c);
      expect(await calls(admin, 'fcall')).toBe(f1);
    } finally {
      admin.disconnect();
    }
  });

  it('reads the heads of a batch headBatch channels per FCALL: at the limit one call, past it one more', async () => {
    const bus = await RedisBus.connect(redis.url, config(), log, { headBatch: 8, watchGatherMs: 0 });
    buses.push(bus);
    const admin = new Redis(redis.url);
    try {
      const got = collect(bus);
      // One channel published before: its head is its last event, not epoch.0-0.
      const old = channel();
      const [oldHead] = await bus.publish([{ channel: old, json: json(0) }]);
      for (const [size, fcalls] of [[8, 1], [9, 2], [17, 3]] as const) {
        const names = Array.from({ length: size }, (_, i) => (i === 3 && size === 9 ? old : channel()));
        const f0 = await calls(admin, 'fcall');
        for (const ch of names) bus.watch(ch);
        const heads = await Promise.all(names.map((ch) => bus.head(ch)));
        expect(await calls(admin, 'fcall'), `${size} channels`).toBe(f0 + fcalls);
        // Each head is its own channel's (in the order asked): the published one's is its event.
        names.forEach((ch, i) => (ch === old ? expect(heads[i], ch).toBe(oldHead) : expect(heads[i], ch).toMatch(/^[0-9a-z]+\.0-0$/)));
        // Every channel of every chunk is live: an event on the last one arrives, and only after its head.
        const last = names[names.length - 1]!;
        const [c] = await bus.publish([{ channel: last, json: json(size) }]);
        await until(() => got.events.some((e) => e.cursor === c), `event on the last of ${size}`);
        expect(bus.isAfter(c!, heads[heads.length - 1]!)).toBe(true);
      }
    } finally {
      admin.disconnect();
    }
  });

  it('tidings_heads answers what tidings_head answers per channel, and refuses keys that do not match the channels before creating anything', async () => {
    const admin = new Redis(redis.url);
    try {
      const bus = await open();
      await bus.head('warm'); // loads the library
      const [a, b, c] = [channel(), channel(), channel()];
      await bus.publish([{ channel: b, json: json(1) }]);
      const many = (await admin.fcall('tidings_heads', 6, streamKey(a), epochKey(a), streamKey(b), epochKey(b), streamKey(c), epochKey(c), '0', a, b, c)) as string[];
      const one = await Promise.all([a, b, c].map((ch) => admin.fcall('tidings_head', 2, streamKey(ch), epochKey(ch), ch, '0')));
      expect(many).toEqual(one);
      const d = channel();
      await expect(admin.fcall('tidings_heads', 4, streamKey(d), epochKey(d), streamKey(a), epochKey(a), '0', d, b)).rejects.toThrow(/^BADKEY/);
      await expect(admin.fcall('tidings_heads', 2, streamKey(d), epochKey(d), '0', d, a)).rejects.toThrow(/^BADKEY/);
      await expect(admin.fcall('tidings_heads', 2, streamKey('x y'), epochKey('x y'), '0', 'x y')).rejects.toThrow(/^BADCHANNEL/);
      await expect(admin.fcall('tidings_heads', 2, streamKey(d), epochKey(d), '-1', d)).rejects.toThrow(/^BADTTL/);
      // Refused calls created no epoch for the channel they named first.
      expect(await admin.exists(epochKey(d))).toBe(0);
    } finally {
      admin.disconnect();
    }
  });

  it('starts new watches at most once per watchGatherMs: those watched meanwhile wait and share one SSUBSCRIBE; a node idle for longer starts at once (0: never waits)', async () => {
    const gather = 1_000;
    const bus = await RedisBus.connect(redis.url, config(), log, { watchGatherMs: gather });
    buses.push(bus);
    const admin = new Redis(redis.url);
    try {
      const first = channel();
      const t0 = Date.now();
      bus.watch(first);
      await bus.head(first);
      // Idle before: the first batch did not wait for the window.
      expect(Date.now() - t0).toBeLessThan(gather);
      // The reconcile that follows a fresh connection retries whatever is not live yet, which
      // would subscribe the channels below early: let it find everything live first.
      await new Promise((r) => setTimeout(r, 250));
      const sub0 = await calls(admin, 'ssubscribe');
      const later = [channel(), channel(), channel()];
      for (const ch of later) { await new Promise((r) => setImmediate(r)); bus.watch(ch); }
      const waited = Promise.all(later.map((ch) => bus.head(ch)));
      // Within the window: not subscribed yet (a timer cannot fire early, however loaded the machine).
      await new Promise((r) => setTimeout(r, 200));
      if (Date.now() - t0 < gather - 50) for (const ch of later) expect(bus.placement(ch)?.live, ch).toBe(false);
      await waited;
      expect(Date.now() - t0).toBeGreaterThanOrEqual(gather - 5);
      expect(await calls(admin, 'ssubscribe')).toBe(sub0 + 1);
      // Past the window, idle: the next watch leaves at once.
      await new Promise((r) => setTimeout(r, gather));
      const t1 = Date.now();
      const next = channel();
      bus.watch(next);
      await bus.head(next);
      expect(Date.now() - t1).toBeLessThan(gather);

      const eager = await RedisBus.connect(redis.url, config(), log, { watchGatherMs: 0 });
      buses.push(eager);
      const a = channel();
      eager.watch(a);
      await eager.head(a);
      const t2 = Date.now();
      const b = channel();
      eager.watch(b);
      await eager.head(b);
      expect(Date.now() - t2).toBeLessThan(gather);
    } finally {
      admin.disconnect();
    }
  });

  it('gathers the channels watched while a batch is being subscribed into the next batch: one more SSUBSCRIBE, not one per channel', async () => {
    const bus = await open();
    const admin = new Redis(redis.url);
    try {
      const first = channel();
      const later = Array.from({ length: 50 }, () => channel());
      const sub0 = await calls(admin, 'ssubscribe');
      // Hold Redis so that the first batch is still in flight while the others are watched, one per turn of the loop.
      await admin.call('CLIENT', 'PAUSE', '300', 'ALL');
      bus.watch(first);
      const heads = [bus.head(first)];
      for (const ch of later) {
        await new Promise((r) => setImmediate(r));
        bus.watch(ch);
        heads.push(bus.head(ch));
      }
      for (const h of await Promise.all(heads)) expect(h).toMatch(/\.0-0$/);
      expect(await calls(admin, 'ssubscribe')).toBe(sub0 + 2);
      // All live: an event on the last one arrives.
      const got = collect(bus);
      const [c] = await bus.publish([{ channel: later[49]!, json: json(1) }]);
      await until(() => got.events.some((e) => e.cursor === c), 'event on a channel of the second batch');
    } finally {
      admin.disconnect();
    }
  });

  it('lets an idle channel\'s history expire after TIDINGS_HISTORY_TTL_S without a publish (0: never)', async () => {
    const admin = new Redis(redis.url);
    try {
      const bus = await open({ historyTtlS: 30 });
      const ch = channel();
      await bus.publish([{ channel: ch, json: json(1) }]);
      const ttl = await admin.ttl(streamKey(ch));
      expect(ttl).toBeGreaterThan(25);
      expect(ttl).toBeLessThanOrEqual(30);
      // A batch publish refreshes it too.
      await admin.expire(streamKey(ch), 5);
      await bus.publish([{ channel: ch, json: json(2) }, { channel: channel(), json: json(3) }]);
      expect(await admin.ttl(streamKey(ch))).toBeGreaterThan(25);
      const forever = await open({ historyTtlS: 0 });
      const ch2 = channel();
      await forever.publish([{ channel: ch2, json: json(1) }]);
      expect(await admin.ttl(streamKey(ch2))).toBe(-1);
      // It really goes: with a 1 s TTL the key is gone after it.
      const short = await open({ historyTtlS: 1 });
      const ch3 = channel();
      await short.publish([{ channel: ch3, json: json(1) }]);
      await until(async () => (await admin.exists(streamKey(ch3))) === 0, 'stream expired', 5_000);
    } finally {
      admin.disconnect();
    }
  });

  it('sends a reset, not a silent jump, when the epoch of a watched channel changes under live delivery', async () => {
    const [pub, node] = [await open(), await open()];
    const got = collect(node);
    const ch = channel();
    node.watch(ch); await node.head(ch);
    const [c1] = await pub.publish([{ channel: ch, json: json(1) }]);
    await until(() => got.events.length === 1, 'first event');
    const admin = new Redis(redis.url);
    await admin.del(streamKey(ch), epochKey(ch));
    admin.disconnect();
    const [c2] = await pub.publish([{ channel: ch, json: json(2) }]);
    await until(() => got.gaps.length === 1, 'reset for the new epoch');
    expect(got.gaps[0]![0]).toBe(ch);
    expect(node.isAfter(c2!, c1!)).toBe(true); // newer epoch sorts later: only the epoch check catches it
    // The reset's head covers event 2 or event 2 follows it: either way nothing after is lost.
    const [c3] = await pub.publish([{ channel: ch, json: json(3) }]);
    await until(() => got.events.some((e) => e.cursor === c3), 'live again');
    expect(got.events.map((e) => e.cursor).filter((c) => c !== c2)).toEqual([c1, c3]);
  });

  it('answers ping true while Redis answers, and false within the timeout when Redis is frozen', async () => {
    const bus = await open();
    expect(await bus.ping(1_000)).toBe(true);
    const admin = new Redis(redis.url);
    try {
      await admin.call('CLIENT', 'PAUSE', '1500', 'ALL');
      const started = Date.now();
      expect(await bus.ping(300)).toBe(false);
      expect(Date.now() - started).toBeLessThan(1_200);
    } finally {
      await admin.call('CLIENT', 'UNPAUSE');
      admin.disconnect();
    }
    expect(await bus.ping(1_000)).toBe(true);
  });

  it('answers reset to a cursor from a stream that expired, even once the channel has a new stream', async () => {
    const bus = await open();
    const ch = channel();
    const zero = await bus.head(ch);
    const [c1] = await bus.publish([{ channel: ch, json: json(1) }]);
    const admin = new Redis(redis.url);
    await admin.del(streamKey(ch)); // what the TTL does
    admin.disconnect();
    expect(await bus.readAfter(ch, c1!)).toEqual({ kind: 'reset', head: zero });
    const [c2] = await bus.publish([{ channel: ch, json: json(2) }]);
    // The new stream never lost an entry, yet c1 is not in it: c1's successors may be gone.
    expect(await bus.readAfter(ch, c1!)).toEqual({ kind: 'reset', head: c2 });
    expect(await bus.readAfter(ch, c2!)).toEqual({ kind: 'events', events: [] });
    expect(await bus.readAfter(ch, zero)).toMatchObject({ kind: 'events', events: [{ cursor: c2 }] });
  });

  it('delivers a publish on one node to the watchers of every node, once each, in order', async () => {
    const [a, b, c] = [await open(), await open(), await open()];
    const got = [collect(a), collect(b), collect(c)];
    const ch = channel();
    for (const bus of [a, b, c]) { bus.watch(ch); await bus.head(ch); }
    const cursors: string[] = [];
    for (let i = 0; i < 30; i++) cursors.push(...(await [a, b, c][i % 3]!.publish([{ channel: ch, json: json(i) }])));
    await until(() => got.every((g) => g.events.length >= 30), 'delivery on three nodes');
    for (const g of got) {
      expect(g.events.map((e) => e.cursor)).toEqual(cursors);
      expect(g.events.map((e) => e.json)).toEqual(cursors.map((_, i) => json(i)));
    }
  });

  it('leaves no hole between head() right after watch() and live delivery', async () => {
    const [pub, node] = [await open(), await open()];
    const got = collect(node);
    const ch = channel();
    // A publisher hammering the channel while the node starts watching it.
    let stop = false;
    const published: string[] = [];
    const pumping = (async () => { let i = 0; while (!stop) published.push(...(await pub.publish([{ channel: ch, json: json(i++) }]))); })();
    await until(() => published.length > 5, 'some events');
    node.watch(ch);
    const head = await node.head(ch);
    // Events after the head, counted from the head: the pump may be past any fixed count by now
    // (it publishes every ~0.2 ms, `until` looks every 10 ms), and a head read after the
    // last publish would leave nothing to check.
    const atHead = published.length;
    await until(() => published.length > atHead + 30, 'more events');
    stop = true;
    await pumping;
    const after = published.filter((c) => node.isAfter(c, head));
    await until(() => got.events.length > 0 && got.events.at(-1)!.cursor === published.at(-1), 'last event');
    // The node delivers at least everything after the head it gave out, in order, no duplicates.
    const delivered = got.events.map((e) => e.cursor).filter((c) => node.isAfter(c, head));
    expect(delivered).toEqual(after);
    expect(new Set(got.events.map((e) => e.cursor)).size).toBe(got.events.length);
  });

  it('ref-counts watch/unwatch: one Redis subscription per channel per node, unsubscribed at zero', async () => {
    const [pub, node] = [await open(), await open()];
    const got = collect(node);
    const ch = channel();
    const admin = new Redis(redis.url);
    const subs = async () => Number(((await admin.call('PUBSUB', 'SHARDNUMSUB', liveKey(ch))) as [string, number])[1]);
    node.watch(ch); node.watch(ch); node.watch(ch);
    await node.head(ch);
    expect(node.watchers(ch)).toBe(3);
    expect(await subs()).toBe(1);
    node.unwatch(ch); node.unwatch(ch);
    expect(node.watchers(ch)).toBe(1);
    await pub.publish([{ channel: ch, json: json(1) }]);
    await until(() => got.events.length === 1, 'event while still watched');
    node.unwatch(ch);
    expect(node.watchers(ch)).toBe(0);
    await until(async () => (await subs()) === 0, 'unsubscribe at zero');
    await pub.publish([{ channel: ch, json: json(2) }]);
    // An unwatched channel costs nothing and delivers nothing; prove the pipe is idle with a watched one.
    const other = channel();
    node.watch(other); await node.head(other);
    await pub.publish([{ channel: other, json: json(3) }]);
    await until(() => got.events.length === 2, 'event on the other channel');
    expect(got.events.map((e) => e.channel)).toEqual([ch, other]);
    node.unwatch(ch); // extra unwatch is harmless
    expect(node.watchers(ch)).toBe(0);
    admin.disconnect();
  });

  it('resumes from a cursor after every node restarted, without reset', async () => {
    const first = await open();
    const ch = channel();
    const cs = await first.publish([1, 2, 3].map((i) => ({ channel: ch, json: json(i) })));
    await first.close();
    const second = await open();
    expect(await second.readAfter(ch, cs[0]!)).toMatchObject({ kind: 'events', events: [{ cursor: cs[1] }, { cursor: cs[2] }] });
  });

  it('lets a storage backend publish with FCALL and rejects bad input with a stable error', async () => {
    const node = await open();
    const got = collect(node);
    const ch = channel();
    node.watch(ch); await node.head(ch);
    const backend = new Redis(redis.url);
    const cursor = await backend.fcall('tidings_publish', 2, streamKey(ch), epochKey(ch), ch, '{"from":"backend"}', '1000');
    await until(() => got.events.length === 1, 'backend event');
    expect(got.events[0]).toEqual({ channel: ch, cursor, json: '{"from":"backend"}' });
    await expect(backend.fcall('tidings_publish', 2, streamKey(ch), epochKey(ch), ch, '{nope')).rejects.toThrow(/^BADJSON/);
    await expect(backend.fcall('tidings_publish', 2, streamKey('a b'), epochKey('a b'), 'a b', '1')).rejects.toThrow(/^BADCHANNEL/);
    await expect(backend.fcall('tidings_publish', 2, streamKey('x'), epochKey('x'), ch, '1')).rejects.toThrow(/^BADKEY/);
    await expect(backend.fcall('tidings_publish', 2, streamKey(ch), epochKey(ch), ch, '1', '0')).rejects.toThrow(/^BADHISTORY/);
    await expect(backend.fcall('tidings_publish', 2, streamKey('c'.repeat(129)), epochKey('c'.repeat(129)), 'c'.repeat(129), '1')).rejects.toThrow(/^BADCHANNEL/);
    backend.disconnect();
  });

  it('rejects a bad channel from publish with a Redis error, not BUS_UNAVAILABLE', async () => {
    const bus = await open();
    const err = await bus.publish([{ channel: 'no spaces', json: '1' }]).catch((e: unknown) => e);
    expect(err).not.toBeInstanceOf(BusUnavailableError);
    expect(String(err)).toMatch(/BADCHANNEL/);
  });

  it('catches up after its subscriber connection is killed: every event, in order, once', async () => {
    const [pub, node] = [await open(), await open()];
    const got = collect(node);
    const ch = channel();
    node.watch(ch); await node.head(ch);
    const cursors = await pub.publish([{ channel: ch, json: json(0) }]);
    await until(() => got.events.length === 1, 'first event');
    const admin = new Redis(redis.url);
    await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
    for (let i = 1; i <= 20; i++) cursors.push(...(await pub.publish([{ channel: ch, json: json(i) }])));
    await until(() => got.events.length >= 21, 'catch-up');
    await pub.publish([{ channel: ch, json: json(21) }]).then((c) => cursors.push(...c));
    await until(() => got.events.length >= 22, 'live again');
    expect(got.events.map((e) => e.cursor)).toEqual(cursors);
    expect(got.gaps).toEqual([]);
    admin.disconnect();
  });

  /**
   * A bus call at and past commandTimeoutMs (300 ms in these tests): with Redis's writes paused 100 ms, `within`
   * is waited out (it checks its own answer); paused 1.5 s, `past` fails BUS_UNAVAILABLE after about 300 ms.
   */
  async function atAndPastCommandTimeout(within: () => Promise<void>, past: () => Promise<unknown>) {
    const admin = new Redis(redis.url);
    try {
      await admin.call('CLIENT', 'PAUSE', '100', 'WRITE');
      await within();
      await admin.call('CLIENT', 'PAUSE', '1500', 'WRITE');
      const started = Date.now();
      const err = await past().catch((e: unknown) => e);
      expect(Date.now() - started).toBeLessThan(1_400);
      expect(err).toMatchObject({ code: 'BUS_UNAVAILABLE' });
    } finally {
      await admin.call('CLIENT', 'UNPAUSE');
      admin.disconnect();
    }
  }

  it('fails a publish Redis does not answer within commandTimeoutMs with BUS_UNAVAILABLE, and waits up to it', async () => {
    const bus = await RedisBus.connect(redis.url, config(), log, { commandTimeoutMs: 300 });
    buses.push(bus);
    const ch = channel();
    // Past the limit, the publish fails instead of hanging the publisher.
    await atAndPastCommandTimeout(
      async () => {
        expect(await bus.publish([{ channel: ch, json: json(1) }])).toHaveLength(1);
      },
      () => bus.publish([{ channel: ch, json: json(2) }]),
    );
  });

  it('fails a head() whose channel cannot go live within commandTimeoutMs with BUS_UNAVAILABLE, and waits up to it', async () => {
    const bus = await RedisBus.connect(redis.url, config(), log, { commandTimeoutMs: 300, watchGatherMs: 0 });
    buses.push(bus);
    const [a, b] = [channel(), channel()];
    // A new channel's head read: past the limit, the waiter fails instead of holding the subscriber's welcome.
    await atAndPastCommandTimeout(
      async () => {
        bus.watch(a);
        expect(await bus.head(a)).toMatch(/^\w+\.\d+-\d+$/);
      },
      () => {
        bus.watch(b);
        return bus.head(b);
      },
    );
  });

  it('resubscribes every watched channel in chunks of subscribeChunk after a reconnect', async () => {
    const pub = await open();
    const node = await RedisBus.connect(redis.url, config(), log, { subscribeChunk: 2, backoffCapMs: 200 });
    buses.push(node);
    const got = collect(node);
    const chs = [channel(), channel(), channel(), channel(), channel()];
    for (const ch of chs) { node.watch(ch); await node.head(ch); }
    const admin = new Redis(redis.url);
    await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
    admin.disconnect();
    const cursors: string[] = [];
    for (const ch of chs) cursors.push(...(await pub.publish([{ channel: ch, json: json(1) }])));
    await until(() => got.events.length === 5, 'one event per channel');
    expect(got.events.map((e) => e.cursor).sort()).toEqual([...cursors].sort());
    const subs = await (async () => { const a = new Redis(redis.url); try { return await a.call('PUBSUB', 'SHARDNUMSUB', ...chs.map(liveKey)); } finally { a.disconnect(); } })() as (string | number)[];
    expect(subs.filter((_, i) => i % 2 === 1)).toEqual(chs.map(() => 1));
  });

  it('refuses to connect to a dead Redis with a clear error', async () => {
    const dead = await startRedis();
    await dead.stop();
    await expect(RedisBus.connect(dead.url, config(), log)).rejects.toThrow(/cannot connect to Redis at redis:\/\/127\.0\.0\.1/);
  });
});

describe('RedisBus while Redis is killed and restarted', () => {
  let redis: TestRedis;
  beforeAll(async () => { redis = await startRedis(); });
  afterAll(async () => { await redis?.stop(); });

  it('answers BUS_UNAVAILABLE with Retry-After and degraded health while down, then recovers and resets what it cannot prove', async () => {
    const opts = { backoffBaseMs: 20, backoffCapMs: 100 };
    const [pub, node] = [await RedisBus.connect(redis.url, config(), log, opts), await RedisBus.connect(redis.url, config(), log, opts)];
    try {
      const got = collect(node);
      const ch = 'outage:1';
      node.watch(ch); await node.head(ch);
      const before = await pub.publish([{ channel: ch, json: json(1) }]);
      await until(() => got.events.length === 1, 'event before the outage');
      expect(pub.health()).toBe('ok');

      await redis.kill();
      await until(() => pub.health() === 'degraded' && node.health() === 'degraded', 'degraded health');
      const err = await pub.publish([{ channel: ch, json: json(2) }]).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BusUnavailableError);
      expect((err as BusUnavailableError).code).toBe('BUS_UNAVAILABLE');
      expect((err as BusUnavailableError).retryAfterS).toBeGreaterThanOrEqual(1);
      await expect(node.head('outage:new')).rejects.toMatchObject({ code: 'BUS_UNAVAILABLE' });
      await expect(node.readAfter(ch, before[0]!)).rejects.toMatchObject({ code: 'BUS_UNAVAILABLE' });

      // The dataset is gone (no persistence): a new epoch, so the old cursor cannot be proven.
      await redis.start();
      await until(() => pub.health() === 'ok' && node.health() === 'ok', 'reconnected');
      await until(() => got.gaps.length === 1, 'gap reported for the watched channel');
      const [gapChannel, gapHead] = got.gaps[0]!;
      expect(gapChannel).toBe(ch);
      expect(gapHead).toMatch(/\.0-0$/);
      expect(await node.readAfter(ch, before[0]!)).toEqual({ kind: 'reset', head: gapHead });

      // Publishing works again (the function library is reloaded) and live delivery resumes.
      const after = await pub.publish([{ channel: ch, json: json(3) }]);
      await until(() => got.events.length === 2, 'event after the outage');
      expect(got.events[1]!.cursor).toBe(after[0]);
      expect(node.isAfter(after[0]!, gapHead)).toBe(true);
      expect(await node.readAfter(ch, gapHead)).toMatchObject({ kind: 'events', events: [{ cursor: after[0] }] });
    } finally {
      await Promise.all([pub.close(), node.close()]);
    }
  });
});
