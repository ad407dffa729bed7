// Smoke runs of every benchmark harness at tiny scale (seconds), plus the pure
// pieces the harness relies on. No timing assertions: these check that each
// harness measures what it claims (everyone connected, every event delivered,
// nobody lost), not how fast. The real runs are `npm run bench`.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

// The benchmarks are plain .mjs (run by `node bench/run.mjs` without a build
// step); import them untyped and describe the slice used here.
const load = (p: string): Promise<any> => import(new URL(`../bench/${p}`, import.meta.url).href);

type Row = Record<string, number>;
interface Result { median: Record<string, Row>; raw: Record<string, Row[]>; targets: { what: string; value: number | null }[] }

const quiet = () => {};

describe('bench wire helpers', () => {
  it('parses the same server frames whatever the chunk boundaries', async () => {
    const { parseFrames } = await load('lib/wire.mjs');
    const frame = (payload: Buffer) => {
      const len = payload.length;
      const hdr = len < 126 ? Buffer.from([0x81, len]) : Buffer.from([0x81, 126, len >> 8, len & 0xff]);
      return Buffer.concat([hdr, payload]);
    };
    const payloads = [Buffer.from('{"type":"welcome"}'), Buffer.alloc(300, 0x61), Buffer.from('{"type":"ping"}')];
    const bytes = Buffer.concat(payloads.map(frame));
    for (let cut = 0; cut <= bytes.length; cut++) {
      const seen: string[] = [];
      const onFrame = (_op: number, b: Buffer, s: number, e: number) => seen.push(b.toString('latin1', s, e));
      const left = parseFrames(null, bytes.subarray(0, cut), onFrame);
      expect(parseFrames(left, bytes.subarray(cut), onFrame)).toBeNull();
      expect(seen).toEqual(payloads.map((p) => p.toString('latin1')));
    }
  });

  it('masks client frames so that unmasking restores the payload (RFC 6455 §5.3)', async () => {
    const { maskedText } = await load('lib/wire.mjs');
    const f: Buffer = maskedText('{"type":"pong"}');
    expect(f[0]).toBe(0x81);
    expect(f[1]! & 0x80).toBe(0x80);
    const mask = f.subarray(2, 6);
    const body = Buffer.from(f.subarray(6).map((b, i) => b ^ mask[i & 3]!));
    expect(body.toString()).toBe('{"type":"pong"}');
  });
});

describe('bench statistics', () => {
  it('takes the median of an even and an odd count, ignoring non-numbers', async () => {
    const { median, percentile } = await load('lib/stats.mjs');
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([NaN, 5])).toBe(5);
    expect(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 99)).toBe(10);
    expect(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 50)).toBe(5);
  });

  it('bins storm reconnections per 100 ms and compares the peak with the uniform rate', async () => {
    const { summarize } = await load('storm.mjs');
    const t0 = 1000;
    // 20 clients over a 1 s window: uniform = 2 per 100 ms; 5 land in the first bin.
    const backs = [10, 20, 30, 40, 50, ...Array.from({ length: 15 }, (_, i) => 100 + i * 60)];
    const rows = backs.map((b) => ({ back: t0 + b, ok: true, resets: 1, closes: {} }));
    const s = summarize(rows, t0, { windowMs: 1000 }, { open: 20, downMs: 0, upMs: 0, events: 1 });
    expect(s.uniformPer100ms).toBe(2);
    expect(s.peakPer100ms).toBe(5);
    expect(s.peakRatio).toBe(2.5);
    expect(s.allBackMs).toBe(100 + 14 * 60);
    expect(s.lost).toBe(0);
  });

  it('counts a client that never came back and one that lost an event', async () => {
    const { summarize } = await load('storm.mjs');
    const rows = [{ back: 1100, ok: true, resets: 0 }, { back: null, ok: false, resets: 0 }];
    const s = summarize(rows, 1000, { windowMs: 1000 }, { open: 2, downMs: 0, upMs: 0, events: 1 });
    expect(s.notBack).toBe(1);
    expect(s.lost).toBe(1);
    expect(Number.isNaN(s.allBackMs)).toBe(true);
  });
});

describe('bench harness smoke runs', () => {
  it('size: bundles Tidings and every reference library the same way', async () => {
    const size = await load('size.mjs');
    const r = await size.run({ log: quiet });
    for (const [name, row] of Object.entries(r.rows as Record<string, { gzipBytes?: number; error?: string }>)) {
      expect(row.error, name).toBeUndefined();
      expect(row.gzipBytes, name).toBeGreaterThan(100);
    }
  }, 60_000);

  it('idle: Tidings and both references accept hello and hold every subscriber', async () => {
    const idle = await load('idle.mjs');
    const r: Result = await idle.run({ log: quiet, overrides: { total: 30, step: 10, warmup: 5, loaders: 2, runs: 1 } });
    for (const s of ['tidings', 'ws', 'net']) {
      expect(r.median[s]!.connected, s).toBe(30);
      expect(r.median[s]!.serverConnections, s).toBe(30);
      expect(Number.isFinite(r.median[s]!.heapPerConn), s).toBe(true);
    }
  }, 60_000);

  it('fanout: every subscriber gets every published event on every server', async () => {
    const fanout = await load('fanout.mjs');
    const r: Result = await fanout.run({ log: quiet, overrides: { subscribers: 30, events: 3, loaders: 2, runs: 1 } });
    for (const s of ['tidings', 'ws', 'net']) {
      expect(r.median[s]!.subscribers, s).toBe(30);
      expect(r.median[s]!.missing, s).toBe(0);
      expect(r.median[s]!.deliveriesPerSec, s).toBeGreaterThan(0);
    }
  }, 60_000);

  it('upgrade: measures both in-process paths and completes every loopback upgrade', async () => {
    const upgrade = await load('upgrade.mjs');
    const r = await upgrade.run({ quick: true, log: quiet, overrides: { churn: 30, warmup: 5, loaders: 1, runs: 1 } });
    expect(r.inprocess.tidings.nsPerOp).toBeGreaterThan(0);
    expect(r.inprocess.wsNet.nsPerOp).toBeGreaterThan(0);
    for (const s of ['tidings', 'ws', 'net']) expect(r.median[s].upgrades, s).toBe(30);
  }, 60_000);

  it('poll: every answer under a matching If-None-Match is a 304', async () => {
    const poll = await load('poll.mjs');
    const r: Result = await poll.run({ log: quiet, overrides: { connections: 2, seconds: 1, runs: 1 } });
    for (const s of ['tidings', 'http304']) {
      expect(r.median[s]!.notModifiedPerSec, s).toBeGreaterThan(0);
      expect(r.median[s]!.other, s).toBe(0);
    }
    expect(r.median.tidings!.bytesPer304).toBeGreaterThan(r.median.http304!.bytesPer304!);
  }, 60_000);

  it('storm: SDK clients come back after a drain and restart without losing an event', async () => {
    const storm = await load('storm.mjs');
    const r: Result = await storm.run({ log: quiet, servers: ['sdk'], overrides: { clients: 20, processes: 1, channels: 4, windowMs: 500, rampMs: 200, runs: 1 } });
    expect(r.median.sdk!.connected).toBe(20);
    expect(r.median.sdk!.notBack).toBe(0);
    expect(r.median.sdk!.lost).toBe(0);
  }, 90_000);

  it('anchors: Tidings (batching on and off) and every anchor installed here hold their subscribers and deliver everything', async () => {
    const anchors = await load('anchors.mjs');
    const r = await anchors.run({ log: quiet, overrides: { idle: 40, fanout: 40, events: 3, warmup: 5, loaders: 1, runs: 1, settleMs: 100 } });
    // Bun and uWebSockets.js run where their binaries are (devDependencies); otherwise they say why not.
    expect(Object.keys(r.median).length + Object.keys(r.notRun).length).toBe(5);
    for (const [kind, m] of Object.entries(r.median as Record<string, Row>)) {
      expect(m.idleConnected, kind).toBe(40);
      expect(m.subscribers, kind).toBe(40);
      expect(m.missing, kind).toBe(0);
      expect(m.rssPerConnKB, kind).toBeGreaterThan(0);
    }
  }, 90_000);

  it('scale: a cluster on Redis gets every subscriber to welcome in both shapes and loses nothing', async () => {
    if (spawnSync('redis-server', ['--version']).status !== 0) return; // CI installs it; a bare machine skips
    const scale = await load('scale.mjs');
    const r = await scale.run({
      log: quiet, accept: false,
      overrides: { subscribers: 300, workers: 2, loaders: 2, concurrency: 16, rate: 100, seconds: 1, broadcasts: 1, settleMs: 200, reserveMs: 5_000, hardLimitMs: 80_000 },
    });
    const [per, shared] = r.rows;
    for (const x of [per, shared]) {
      expect(x.subscribers, x.shape).toBe(300);
      expect(x.processes, x.shape).toBe(3); // primary + 2 workers, all summed
      expect(x.rssPerSubscriberKB, x.shape).toBeGreaterThan(0);
    }
    expect(per.published).toBeGreaterThan(50);
    expect(per.expectedDeliveries).toBe(per.published);
    expect(per.lost).toBe(0);
    expect(per.duplicates).toBe(0);
    expect(per.latencyP99Ms).toBeGreaterThan(0);
    // Head reads come from the watch (no second tidings_head per subscriber), SUBSCRIBEs are batched.
    expect(per.redisCommands.fcall).toBeLessThanOrEqual(1.05);
    expect(per.redisCommands.ssubscribe ?? per.redisCommands.subscribe).toBeLessThan(1);
    expect(shared.missing).toBe(0);
    expect(shared.broadcastToLastMs).toBeGreaterThan(0);
  }, 90_000);
});
