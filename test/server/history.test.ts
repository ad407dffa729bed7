import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { History } from '../../server/pubsub/history.js';
import { MemoryBus } from '../../server/pubsub/memory-bus.js';
import type { StoredEvent } from '../../server/pubsub/bus.js';

const E = 'ep0001';

function fill(h: History, channel: string, n: number): StoredEvent[] {
  return Array.from({ length: n }, (_, i) => h.append(channel, JSON.stringify({ i })));
}

describe('History', () => {
  it('gives an empty channel the head <epoch>-0, a valid resume point', () => {
    const h = new History(3, E);
    expect(h.head('a')).toBe(`${E}-0`);
    expect(h.readAfter('a', `${E}-0`)).toEqual({ kind: 'events', events: [] });
  });

  it('numbers events per channel and moves the head', () => {
    const h = new History(3, E);
    expect(h.append('a', '1').cursor).toBe(`${E}-1`);
    expect(h.append('b', '1').cursor).toBe(`${E}-1`);
    expect(h.append('a', '2').cursor).toBe(`${E}-2`);
    expect(h.head('a')).toBe(`${E}-2`);
  });

  it('returns every event after the cursor, in order', () => {
    const h = new History(5, E);
    const ev = fill(h, 'a', 4);
    expect(h.readAfter('a', `${E}-1`)).toEqual({ kind: 'events', events: ev.slice(1) });
    expect(h.readAfter('a', `${E}-4`)).toEqual({ kind: 'events', events: [] });
  });

  it('replays from exactly the oldest retained event when the ring is full (at the limit)', () => {
    const h = new History(3, E);
    const ev = fill(h, 'a', 5); // holds 3,4,5
    expect(h.readAfter('a', `${E}-2`)).toEqual({ kind: 'events', events: ev.slice(2) });
  });

  it('resets a cursor one event older than the retained window (past the limit)', () => {
    const h = new History(3, E);
    fill(h, 'a', 5);
    expect(h.readAfter('a', `${E}-1`)).toEqual({ kind: 'reset', head: `${E}-5` });
    expect(h.readAfter('a', `${E}-0`)).toEqual({ kind: 'reset', head: `${E}-5` });
  });

  it('resets a cursor from another epoch (a restart), even with a plausible seq', () => {
    const h = new History(10, E);
    fill(h, 'a', 3);
    expect(h.readAfter('a', 'other1-2')).toEqual({ kind: 'reset', head: `${E}-3` });
  });

  it('resets a cursor ahead of the head', () => {
    const h = new History(10, E);
    fill(h, 'a', 3);
    expect(h.readAfter('a', `${E}-4`)).toEqual({ kind: 'reset', head: `${E}-3` });
    expect(h.readAfter('never', `${E}-1`)).toEqual({ kind: 'reset', head: `${E}-0` });
  });

  it.each(['', 'garbage', `${E}-x`, `${E}-01`, `${E}`])('resets a malformed cursor %j', (c) => {
    const h = new History(10, E);
    fill(h, 'a', 2);
    expect(h.readAfter('a', c)).toEqual({ kind: 'reset', head: `${E}-2` });
  });

  it('refuses a capacity below 1', () => {
    expect(() => new History(0, E)).toThrow(RangeError);
  });

  it('never loses silently: any cursor gets exactly the events after it, or a reset to the head', () => {
    fc.assert(fc.property(
      fc.integer({ min: 1, max: 8 }), fc.integer({ min: 0, max: 30 }), fc.integer({ min: -2, max: 35 }),
      (cap, n, at) => {
        const h = new History(cap, E);
        const all = fill(h, 'a', n);
        const r = h.readAfter('a', `${E}-${Math.max(0, at)}`);
        const c = Math.max(0, at);
        if (r.kind === 'events') {
          expect(c).toBeLessThanOrEqual(n);
          expect(r.events).toEqual(all.slice(c));
        } else {
          expect(r.head).toBe(`${E}-${n}`);
          expect(c > n || c < n - cap).toBe(true);
        }
      },
    ));
  });
});

describe('History byte cap', () => {
  // Each event of channel x with json "1" counts 1 + 1 + 96 = 98 bytes.
  const EV = 98;

  it('keeps every channel at exactly the cap', () => {
    const h = new History(10, E, 3 * EV);
    h.append('a', '1');
    h.append('b', '1');
    h.append('c', '1');
    expect([h.channels, h.retainedBytes]).toEqual([3, 3 * EV]);
  });

  it('drops the least recently published channel one event past the cap', () => {
    const h = new History(10, E, 3 * EV);
    h.append('a', '1');
    h.append('b', '1');
    h.append('a', '1'); // a is now more recent than b
    h.append('c', '1');
    expect(h.channels).toBe(2);
    expect(h.readAfter('a', `${E}-0`)).toMatchObject({ kind: 'events' });
    expect(h.readAfter('b', `${E}-0`)).toEqual({ kind: 'reset', head: `${E}-4` });
  });

  it('resets cursors of a dropped channel even after it is published to again', () => {
    const h = new History(10, E, 2 * EV);
    h.append('b', '1'); // b: E-1
    h.append('a', '1');
    h.append('a', '1'); // drops b; 3 appends so far
    h.append('b', '1'); // new ring for b from seq 3: E-4 (and drops a)
    h.append('b', '1'); // E-5
    expect(h.readAfter('b', `${E}-1`)).toEqual({ kind: 'reset', head: `${E}-5` });
    expect(h.readAfter('b', `${E}-0`)).toEqual({ kind: 'reset', head: `${E}-5` });
    expect(h.readAfter('b', `${E}-3`)).toMatchObject({ kind: 'events', events: [{ cursor: `${E}-4` }, { cursor: `${E}-5` }] });
  });

  it('gives a channel with no ring the seq a new ring would start from as its head', () => {
    const h = new History(10, E, EV);
    h.append('a', '1');
    h.append('b', '1'); // drops a
    expect(h.head('a')).toBe(`${E}-2`);
    expect(h.readAfter('zzz', `${E}-2`)).toEqual({ kind: 'events', events: [] });
  });

  it('never loses silently across drops: every cursor handed out replays exactly or resets', () => {
    const op = fc.record({ ch: fc.constantFrom('a', 'b', 'c'), size: fc.integer({ min: 1, max: 30 }) });
    fc.assert(fc.property(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 100, max: 600 }), fc.array(op, { maxLength: 40 }), (cap, maxBytes, ops) => {
      const h = new History(cap, E, maxBytes);
      const published: Record<string, StoredEvent[]> = { a: [], b: [], c: [] };
      const handedOut: [string, string, number][] = []; // channel, cursor, events of that channel before it
      for (const ch of ['a', 'b', 'c']) handedOut.push([ch, h.head(ch), 0]);
      for (const { ch, size } of ops) {
        const e = h.append(ch, 'x'.repeat(size));
        published[ch]!.push(e);
        handedOut.push([ch, e.cursor, published[ch]!.length]);
        handedOut.push([ch, h.head(ch), published[ch]!.length]);
      }
      for (const [ch, cursor, before] of handedOut) {
        const r = h.readAfter(ch, cursor);
        if (r.kind === 'events') expect(r.events).toEqual(published[ch]!.slice(before));
        else expect(r.head).toBe(h.head(ch));
      }
    }));
  });
});

describe('MemoryBus', () => {
  it('resolves publish with cursors after the events are in history', async () => {
    const bus = new MemoryBus({ history: 10, epoch: E });
    const cursors = await bus.publish([{ channel: 'a', json: '1' }, { channel: 'a', json: '2' }]);
    expect(cursors).toEqual([`${E}-1`, `${E}-2`]);
    expect(await bus.head('a')).toBe(`${E}-2`);
    expect(await bus.readAfter('a', `${E}-0`)).toEqual({
      kind: 'events', events: [{ channel: 'a', cursor: `${E}-1`, json: '1' }, { channel: 'a', cursor: `${E}-2`, json: '2' }],
    });
  });

  it('calls onEvent synchronously only for watched channels, with history already holding the event', async () => {
    const bus = new MemoryBus({ epoch: E });
    const seen: string[] = [];
    const headsSeen: Promise<string>[] = [];
    bus.onEvent = (e) => {
      seen.push(`${e.channel}@${e.cursor}`);
      headsSeen.push(bus.head(e.channel));
    };
    bus.watch('a');
    const p = bus.publish([{ channel: 'a', json: '1' }, { channel: 'b', json: '1' }]);
    expect(seen).toEqual([`a@${E}-1`]); // before publish resolves
    await p;
    // The event was already in history while we were told about it.
    expect(await Promise.all(headsSeen)).toEqual([`${E}-1`]);
  });

  it('counts watch references: the channel stays watched until the last unwatch', async () => {
    const bus = new MemoryBus({ epoch: E });
    const seen: string[] = [];
    bus.onEvent = (e) => seen.push(e.cursor);
    bus.watch('a');
    bus.watch('a');
    bus.unwatch('a');
    await bus.publish([{ channel: 'a', json: '1' }]);
    bus.unwatch('a');
    bus.unwatch('a'); // extra unwatch is harmless
    await bus.publish([{ channel: 'a', json: '2' }]);
    expect(seen).toEqual([`${E}-1`]);
    expect(bus.isWatched('a')).toBe(false);
  });

  it('orders cursors of its own epoch and puts its cursors after foreign ones', () => {
    const bus = new MemoryBus({ epoch: E });
    expect(bus.isAfter(`${E}-3`, `${E}-2`)).toBe(true);
    expect(bus.isAfter(`${E}-2`, `${E}-2`)).toBe(false);
    expect(bus.isAfter(`${E}-1`, 'zz-9')).toBe(true);
    expect(bus.isAfter('zz-9', `${E}-1`)).toBe(false);
  });

  it('gives each start a different epoch, so old cursors reset after a restart', async () => {
    const before = new MemoryBus();
    const [c] = await before.publish([{ channel: 'a', json: '1' }]);
    const after = new MemoryBus();
    await after.publish([{ channel: 'a', json: '1' }, { channel: 'a', json: '2' }]);
    expect(await after.readAfter('a', c!)).toEqual({ kind: 'reset', head: await after.head('a') });
  });

  it('reports ok health', () => {
    expect(new MemoryBus().health()).toBe('ok');
  });
});
