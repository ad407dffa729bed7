// The hub on its own: fake subscribers, a real memory bus, no sockets.
import { describe, expect, it } from 'vitest';
import { eventMessage, Hub, resetMessage, type Parts } from '../../server/pubsub/hub.js';
import { MemoryBus } from '../../server/pubsub/memory-bus.js';
import type { StoredEvent } from '../../server/pubsub/bus.js';

interface Sub { id: number }
interface Write { sub: Sub; channel: string; cursor: string | null; frame: Buffer; parts: Parts | null }

function setup(slice = 2000, time: { sliceMs?: number; now?: () => number; batch?: number } = {}) {
  const bus = new MemoryBus({ epoch: 'e' });
  const writes: Write[] = [];
  const log: string[] = [];
  const hub = new Hub<Sub>(bus, (sub, channel, cursor, frame, parts) => {
    writes.push({ sub, channel, cursor, frame, parts });
    log.push(`write ${sub.id} ${cursor}`);
    return true;
  }, { slice, ...time });
  bus.onEvent = (e) => hub.onEvent(e);
  const subs = (n: number) => Array.from({ length: n }, (_, i) => ({ id: i }));
  return { bus, hub, writes, log, subs };
}

/** The text inside a server text frame (unmasked, FIN, opcode 1). */
function textOf(frame: Buffer): string {
  const len = frame[1]! & 0x7f;
  const at = len === 126 ? 4 : len === 127 ? 10 : 2;
  return frame.subarray(at).toString('utf8');
}

describe('messages', () => {
  it('builds the event message around the stored json without re-serializing it', () => {
    const e: StoredEvent = { channel: 'user:42', cursor: 'e-17', json: '{"folder":"inbox","unread":3}' };
    expect(JSON.parse(eventMessage(e))).toEqual({ type: 'event', channel: 'user:42', cursor: 'e-17', data: { folder: 'inbox', unread: 3 } });
    expect(JSON.parse(resetMessage('user:42', 'e-9'))).toEqual({ type: 'reset', channel: 'user:42', cursor: 'e-9' });
  });
});

describe('fan-out', () => {
  it('encodes an event once: the same Buffer instance is written to every subscriber', async () => {
    const { bus, hub, writes, subs } = setup();
    for (const s of subs(3)) hub.subscribe('news', s);
    await bus.publish([{ channel: 'news', json: '{"x":1}' }]);
    expect(writes).toHaveLength(3);
    expect(new Set(writes.map((w) => w.frame)).size).toBe(1);
    expect(JSON.parse(textOf(writes[0]!.frame))).toEqual({ type: 'event', channel: 'news', cursor: 'e-1', data: { x: 1 } });
  });

  it('writes nothing for a channel nobody here subscribes to, and stops after the last unsubscribe', async () => {
    const { bus, hub, writes, subs } = setup();
    const [a, b] = subs(2);
    hub.subscribe('c', a!);
    hub.subscribe('c', b!);
    hub.unsubscribe('c', a!);
    await bus.publish([{ channel: 'c', json: '1' }, { channel: 'other', json: '2' }]);
    expect(writes.map((w) => w.sub)).toEqual([b]);
    hub.unsubscribe('c', b!);
    await bus.publish([{ channel: 'c', json: '3' }]);
    expect(writes).toHaveLength(1);
    expect(hub.channels).toBe(0);
  });

  it('watches a channel on the bus while it has local subscribers, once per channel', () => {
    const { bus, hub, subs } = setup();
    const [a, b] = subs(2);
    hub.subscribe('c', a!);
    hub.subscribe('c', b!);
    expect(bus.isWatched('c')).toBe(true);
    hub.unsubscribe('c', a!);
    expect(bus.isWatched('c')).toBe(true);
    hub.unsubscribe('c', b!);
    expect(bus.isWatched('c')).toBe(false);
  });

  it('yields between slices of fanoutSlice writes (a setImmediate callback runs in between)', async () => {
    const { bus, hub, log, subs } = setup(2);
    for (const s of subs(5)) hub.subscribe('news', s);
    await bus.publish([{ channel: 'news', json: '1' }]);
    setImmediate(() => log.push('other work'));
    // The first slice ran inline; the rest waits for the event loop.
    expect(log).toEqual(['write 0 e-1', 'write 1 e-1']);
    await new Promise((r) => setTimeout(r, 20));
    // Slices of 2 with setImmediate between: work queued after the first yield runs before the last slice.
    expect(log).toEqual(['write 0 e-1', 'write 1 e-1', 'write 2 e-1', 'write 3 e-1', 'other work', 'write 4 e-1']);
    expect(hub.pending).toBe(0);
  });

  it('also yields when a slice has used its time budget (fanoutSliceMs), looking at the clock every 64 writes', async () => {
    let t = 0;
    const { bus, hub, writes, subs } = setup(2000, { sliceMs: 4, now: () => t++ });
    for (const s of subs(1000)) hub.subscribe('big', s);
    await bus.publish([{ channel: 'big', json: '1' }]);
    // Clock read at the start (0) and every 64 writes (1, 2, 3, 4): at 4 ms, after 256 writes, it yields.
    expect(writes).toHaveLength(256);
    await new Promise((r) => setImmediate(r));
    expect(writes.length).toBeGreaterThan(256);
  });

  it('does not yield for time while the clock stays inside the budget', async () => {
    const { bus, hub, writes, subs } = setup(2000, { sliceMs: 4, now: () => 3 });
    for (const s of subs(1000)) hub.subscribe('big', s);
    await bus.publish([{ channel: 'big', json: '1' }]);
    expect(writes).toHaveLength(1000);
  });

  it('keeps per-channel order when a second event arrives while the first is still slicing', async () => {
    const { bus, hub, writes, subs } = setup(2);
    const all = subs(5);
    for (const s of all) hub.subscribe('news', s);
    await bus.publish([{ channel: 'news', json: '1' }]);
    await bus.publish([{ channel: 'news', json: '2' }]);
    await new Promise((r) => setTimeout(r, 20));
    for (const s of all) {
      expect(writes.filter((w) => w.sub === s).map((w) => w.cursor)).toEqual(['e-1', 'e-2']);
    }
  });

  it('skips a subscriber that left while its event was still queued (a newcomer reads it from history instead)', async () => {
    const { bus, hub, writes, subs } = setup(1);
    const [a, b, c] = subs(3);
    hub.subscribe('news', a!);
    hub.subscribe('news', b!);
    await bus.publish([{ channel: 'news', json: '1' }]); // a written inline, b queued
    hub.unsubscribe('news', b!);
    hub.subscribe('news', c!);
    await new Promise((r) => setTimeout(r, 20));
    expect(writes.map((w) => w.sub.id)).toEqual([0]);
  });

  it('sends reset (cursor null: never deduplicated) to every subscriber on a bus gap', () => {
    const { hub, writes, subs } = setup();
    for (const s of subs(2)) hub.subscribe('c', s);
    hub.onGap('c', 'e-40');
    expect(writes.map((w) => w.cursor)).toEqual([null, null]);
    expect(JSON.parse(textOf(writes[0]!.frame))).toEqual({ type: 'reset', channel: 'c', cursor: 'e-40' });
  });
});

describe('batching (fanoutBatch > 1)', () => {
  /** Every text payload in a buffer of concatenated server frames. */
  function textsOf(buf: Buffer): string[] {
    const out: string[] = [];
    for (let off = 0; off < buf.length;) {
      const len = buf[off + 1]! & 0x7f;
      const hdr = len === 126 ? 4 : 2;
      const n = len === 126 ? buf.readUInt16BE(off + 2) : len;
      out.push(buf.subarray(off + hdr, off + hdr + n).toString('utf8'));
      off += hdr + n;
    }
    return out;
  }

  it('writes a burst of one channel as ONE write per subscriber, the same concatenated Buffer for all', async () => {
    const { bus, hub, writes, subs } = setup(2000, { batch: 32 });
    for (const s of subs(3)) hub.subscribe('news', s);
    await bus.publish([1, 2, 3, 4, 5].map((n) => ({ channel: 'news', json: String(n) })));
    expect(writes).toHaveLength(3);
    expect(new Set(writes.map((w) => w.frame)).size).toBe(1);
    expect(textsOf(writes[0]!.frame).map((t) => JSON.parse(t).data)).toEqual([1, 2, 3, 4, 5]);
    expect(writes[0]!.cursor).toBe('e-5');
    expect(writes[0]!.parts!.filter((_, i) => i % 2 === 0)).toEqual(['e-1', 'e-2', 'e-3', 'e-4', 'e-5']);
  });

  it('merges at most `batch` events into one write, in order', async () => {
    const { bus, hub, writes, subs } = setup(2000, { batch: 2 });
    hub.subscribe('user:1', subs(1)[0]!);
    await bus.publish([1, 2, 3, 4, 5].map((n) => ({ channel: 'user:1', json: String(n) })));
    expect(writes.map((w) => textsOf(w.frame).map((t) => JSON.parse(t).data))).toEqual([[1, 2], [3, 4], [5]]);
    expect(writes.map((w) => w.parts === null)).toEqual([false, false, true]);
  });

  it('with batch 1 writes event by event (the unbatched path)', async () => {
    const { bus, hub, writes, subs } = setup(2000, { batch: 1 });
    hub.subscribe('c', subs(1)[0]!);
    await bus.publish([1, 2, 3].map((n) => ({ channel: 'c', json: String(n) })));
    expect(writes.map((w) => w.cursor)).toEqual(['e-1', 'e-2', 'e-3']);
    expect(writes.every((w) => w.parts === null)).toBe(true);
  });

  it('never merges across channels, and keeps the global order', async () => {
    const { bus, hub, writes, subs } = setup(2000, { batch: 32 });
    const [a] = subs(1);
    hub.subscribe('x', a!);
    hub.subscribe('y', a!);
    await bus.publish([{ channel: 'x', json: '1' }, { channel: 'x', json: '2' }, { channel: 'y', json: '3' }, { channel: 'x', json: '4' }]);
    expect(writes.map((w) => [w.channel, textsOf(w.frame).length])).toEqual([['x', 2], ['y', 1], ['x', 1]]);
  });

  it('does not merge into a fan-out already under way; events queued behind it merge with each other', async () => {
    const { bus, hub, writes, subs } = setup(2, { batch: 32 });
    const all = subs(5);
    for (const s of all) hub.subscribe('news', s);
    await bus.publish([{ channel: 'news', json: '1' }]); // first slice: 2 of 5 written
    expect(writes).toHaveLength(2);
    await bus.publish([{ channel: 'news', json: '2' }]);
    await bus.publish([{ channel: 'news', json: '3' }]);
    await new Promise((r) => setTimeout(r, 20));
    for (const s of all) {
      const got = writes.filter((w) => w.sub === s).map((w) => textsOf(w.frame).map((t) => JSON.parse(t).data));
      expect(got).toEqual([[1], [2, 3]]);
    }
  });

  it('batches a reset (cursor null) with the events around it, keeping its place', async () => {
    const { bus, hub, writes, subs } = setup(2000, { batch: 32 });
    hub.subscribe('c', subs(1)[0]!);
    hub.onGap('c', 'e-0');
    await bus.publish([{ channel: 'c', json: '1' }]);
    expect(writes).toHaveLength(1);
    expect(writes[0]!.parts!.filter((_, i) => i % 2 === 0)).toEqual([null, 'e-1']);
    expect(textsOf(writes[0]!.frame).map((t) => JSON.parse(t).type)).toEqual(['reset', 'event']);
  });
});
