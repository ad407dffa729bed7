// Issue 12, item 2: the fan-out queue is bounded by delivery lag and bytes;
// beyond it publishes answer 503 fanout_behind + Retry-After instead of being
// accepted to arrive half a minute late, and /readyz and /metrics show it.
import { afterEach, describe, expect, it } from 'vitest';
import { DrainRate, fanoutBehind, fanoutRetryAfterS } from '../../server/pubsub/backlog.js';
import { Hub } from '../../server/pubsub/hub.js';
import { MemoryBus } from '../../server/pubsub/memory-bus.js';
import { TEST_PUBLISHER_KEY } from '../support/context.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { subscribe, type WsClient } from '../support/ws-client.js';

const LIMITS = { maxFanoutLagMs: 2000, maxFanoutQueueBytes: 1000 };

describe('fanoutBehind (pure)', () => {
  it('is null at the limits and a reason one past either', () => {
    expect(fanoutBehind({ jobs: 5, bytes: 1000, lagMs: 2000 }, LIMITS)).toBeNull();
    expect(fanoutBehind({ jobs: 5, bytes: 1000, lagMs: 2001 }, LIMITS)).toMatch(/2001 ms behind/);
    expect(fanoutBehind({ jobs: 5, bytes: 1001, lagMs: 0 }, LIMITS)).toMatch(/1001 bytes/);
  });
  it('asks to retry after about the lag, 1 to 30 s', () => {
    expect(fanoutRetryAfterS({ jobs: 1, bytes: 1, lagMs: 0 })).toBe(1);
    expect(fanoutRetryAfterS({ jobs: 1, bytes: 1, lagMs: 4200 })).toBe(5);
    expect(fanoutRetryAfterS({ jobs: 1, bytes: 1, lagMs: 600_000 })).toBe(30);
  });
});

describe('DrainRate (pure)', () => {
  it('knows no rate before a full window, then projects queued writes at the measured rate', () => {
    const r = new DrainRate();
    r.busy(0);
    r.add(100, 50);
    expect(r.projectedMs(1000)).toBe(0);
    r.add(250, 200); // 250 writes in 250 ms
    expect(r.projectedMs(1000)).toBe(1000);
    // Idle time does not count: a new busy period starts its own window.
    r.idle();
    r.busy(10_000);
    r.add(10_250, 750); // 3 writes/ms, smoothed with the 1/ms before: 2/ms
    expect(r.projectedMs(1000)).toBe(500);
  });
});

describe('Hub.backlog', () => {
  it('estimates the lag of an event queued now from the writes ahead of it, not from the oldest job alone', async () => {
    // Before: only the oldest job's wait counted. With many jobs queued that is a
    // fraction of what a new event waits (issue: 29.5 s behind while "2 s" looked fine).
    let t = 0;
    const bus = new MemoryBus({ epoch: 'e' });
    // Each write costs 1 ms of the fake clock: 1 write/ms.
    const hub = new Hub<{ id: number }>(bus, () => { t += 1; return true; }, { slice: 10, sliceMs: 1e9, now: () => t });
    bus.onEvent = (e) => hub.onEvent(e);
    for (let i = 0; i < 10; i++) hub.subscribe('c', { id: i });
    await bus.publish(Array.from({ length: 100 }, (_, i) => ({ channel: 'c', json: String(i) })));
    // 1,000 writes queued; let 30 slices (300 writes, 300 ms) run.
    for (let i = 0; i < 30; i++) await new Promise((r) => setImmediate(r));
    const b = hub.backlog();
    expect(b.jobs).toBe(70);
    // ~700 writes left at 1 write/ms; the oldest job has waited only ~300 ms.
    expect(b.lagMs).toBeGreaterThan(600);
    expect(b.lagMs).toBeLessThan(800);
    await expect.poll(() => hub.pending, { timeout: 5000 }).toBe(0);
  });

  it('counts a job that will be merged into the one before it as no extra writes', async () => {
    let t = 0;
    const bus = new MemoryBus({ epoch: 'e' });
    const hub = new Hub<{ id: number }>(bus, () => { t += 1; return true; }, { slice: 10, sliceMs: 1e9, now: () => t, batch: 32 });
    bus.onEvent = (e) => hub.onEvent(e);
    for (let i = 0; i < 10; i++) hub.subscribe('c', { id: i });
    // The memory bus hands the events over synchronously; the hub's first slice runs on a microtask.
    const published = bus.publish(Array.from({ length: 64 }, (_, i) => ({ channel: 'c', json: String(i) })));
    // 64 events in two merged writes per subscriber: 20 writes in all, not 640.
    expect((hub as unknown as { queuedWrites: number }).queuedWrites).toBe(20);
    await published;
    await expect.poll(() => hub.pending, { timeout: 5000 }).toBe(0);
  });

  it('counts queued jobs, their bytes and the oldest one\'s wait, and is empty once written', async () => {
    let t = 1000;
    const bus = new MemoryBus({ epoch: 'e' });
    const hub = new Hub<{ id: number }>(bus, () => true, { slice: 1, now: () => t });
    bus.onEvent = (e) => hub.onEvent(e);
    hub.subscribe('c', { id: 1 });
    hub.subscribe('c', { id: 2 });
    expect(hub.backlog()).toEqual({ jobs: 0, bytes: 0, lagMs: 0 });
    await bus.publish([{ channel: 'c', json: '1' }, { channel: 'c', json: '22' }]);
    t += 300;
    const b = hub.backlog();
    expect(b.jobs).toBe(2);
    expect(b.lagMs).toBe(300);
    // Two text frames: 2-byte header + the event message each.
    expect(b.bytes).toBe(2 * 2 + '{"type":"event","channel":"c","cursor":"e-1","data":1}'.length + '{"type":"event","channel":"c","cursor":"e-2","data":22}'.length);
    await expect.poll(() => hub.pending, { timeout: 2000 }).toBe(0);
    expect(hub.backlog()).toEqual({ jobs: 0, bytes: 0, lagMs: 0 });
  });
});

const servers: TestServer[] = [];
const clients: WsClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.ws.terminate();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function publish(s: TestServer, channel: string, data: unknown): Promise<Response> {
  return fetch(`${s.url}/v1/publish`, {
    method: 'POST', headers: { authorization: `Bearer ${TEST_PUBLISHER_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ channel, data }),
  });
}

describe('publish under fan-out backlog', () => {
  it('answers 200 at the lag limit and 503 fanout_behind + Retry-After past it, stores nothing, and /readyz says why', async () => {
    const s = await startTestServer({ maxFanoutLagMs: 2000 });
    servers.push(s);
    let backlog = { jobs: 3, bytes: 300, lagMs: 2000 };
    s.ctx.fanout = () => backlog;
    expect((await publish(s, 'a', 1)).status).toBe(200);
    backlog = { jobs: 3, bytes: 300, lagMs: 3500 };
    const head = await s.ctx.bus.head('a');
    const r = await publish(s, 'a', 2);
    expect(r.status).toBe(503);
    expect(r.headers.get('retry-after')).toBe('4');
    expect(await r.json()).toMatchObject({ error: 'fanout_behind' });
    expect(await s.ctx.bus.head('a')).toBe(head);
    const ready = await fetch(`${s.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.text()).toMatch(/^fanout_behind/);
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    expect(metrics).toMatch(/tidings_publishes_refused_total 1\b/);
    expect(metrics).toMatch(/tidings_fanout_lag_seconds 3.5\b/);
    expect(metrics).toMatch(/tidings_fanout_queue_bytes 300\b/);
  });

  it('answers 503 past the queue byte limit', async () => {
    const s = await startTestServer({ maxFanoutQueueBytes: 1000 });
    servers.push(s);
    s.ctx.fanout = () => ({ jobs: 1, bytes: 1000, lagMs: 0 });
    expect((await publish(s, 'a', 1)).status).toBe(200);
    s.ctx.fanout = () => ({ jobs: 1, bytes: 1001, lagMs: 0 });
    expect((await publish(s, 'a', 1)).status).toBe(503);
  });

  it('a real flood (bounded: 100 subscribers, events queued faster than sliced) is refused while behind, accepted once caught up, nothing lost', async () => {
    // Before: every publish was acknowledged, however far behind delivery was.
    const s = await startTestServer({ fanoutSlice: 2, fanoutSliceMs: 1, fanoutBatch: 1, maxFanoutLagMs: 50 });
    servers.push(s);
    const token = await s.token(['flood']);
    for (let i = 0; i < 100; i += 20) {
      const batch = await Promise.all(Array.from({ length: 20 }, () => subscribe(s.wsUrl, token, { flood: null })));
      clients.push(...batch.map((b) => b.c));
    }
    // 150 events straight into the bus: 15,000 writes, 2 per slice.
    const events = Array.from({ length: 150 }, (_, i) => ({ channel: 'flood', json: String(i) }));
    await s.ctx.bus.publish(events);
    await new Promise((r) => setTimeout(r, 120));
    const refused = await publish(s, 'flood', 'late');
    expect(refused.status).toBe(503);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    await expect.poll(() => s.server.hub.backlog().jobs, { timeout: 40_000, interval: 50 }).toBe(0);
    expect((await publish(s, 'flood', 'ok')).status).toBe(200);
    // Every subscriber gets all 150 + the accepted one, in order; the refused one never.
    const last = clients[clients.length - 1]!;
    await expect.poll(() => last.queue.length, { timeout: 20_000 }).toBe(151);
    expect(last.queue.map((m) => m.data)).toEqual([...events.map((_, i) => i), 'ok']);
  }, 90_000);
});
