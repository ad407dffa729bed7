import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { cursorStore, parseTag, validator } from '../../src/cursors.js';

const ev = (channel: string, cursor: string) => ({ type: 'event' as const, channel, cursor, data: null });

describe('cursor store', () => {
  it('takes a head only for channels the stream started without a cursor', () => {
    const s = cursorStore({ a: 'x-5', b: undefined });
    const st = s.stream();
    expect(s.heads(st, { a: 'x-9', b: 'x-1', other: 'x-3' })).toEqual({ b: 'x-1' });
    expect(s.cur).toEqual({ a: 'x-5', b: 'x-1' });
  });

  it('moves the cursor on each new event; a stream that repeats is behind and its repeats are dropped', () => {
    const s = cursorStore({ a: undefined });
    const one = s.stream();
    expect(s.take(one, ev('a', 'c1'))).toBe(true);
    expect(s.take(one, ev('a', 'c2'))).toBe(true);
    const two = { a: undefined }; // a replay from before c1 (a probe's hello sent earlier)
    expect(s.take(two, ev('a', 'c1'))).toBe(false);
    expect(s.take(two, ev('a', 'c2'))).toBe(false);
    expect(s.take(two, ev('a', 'c3'))).toBe(true); // in step again
    expect(s.take(one, ev('a', 'c3'))).toBe(false);
    expect(s.cur).toEqual({ a: 'c3' });
  });

  it('keeps a reset apart from an event with the same cursor (a reset names the head)', () => {
    const s = cursorStore({ a: undefined });
    const st = s.stream();
    expect(s.take(st, ev('a', 'c1'))).toBe(true);
    expect(s.take(st, { type: 'reset', channel: 'a', cursor: 'c1' })).toBe(true);
  });

  it('a reset from a stream that is behind is delivered when it names another head, dropped when it names ours', () => {
    const s = cursorStore({ a: 'c0' });
    const behind = s.stream();
    s.take(s.stream(), ev('a', 'c1'));
    expect(s.take(behind, { type: 'reset', channel: 'a', cursor: 'c1' })).toBe(false);
    expect(s.take(behind, { type: 'reset', channel: 'a', cursor: 'c9' })).toBe(true);
    expect(s.cur).toEqual({ a: 'c9' });
  });

  it('ignores channels it does not hold (unsubscribed, or never asked for)', () => {
    const s = cursorStore({ a: undefined });
    expect(s.take(s.stream(), ev('z', 'c1'))).toBe(false);
    expect(s.cur).toEqual({ a: undefined });
  });

  /**
   * Property: streams start from the client's cursor whenever they like (a
   * socket's hello, a poll request), each then delivers the server's history
   * after its start in order, interleaved in any way; overlaps run into the
   * thousands. Every event is delivered once, in publish order. Cursors are
   * random strings: nothing relies on their order.
   */
  it('delivers each event exactly once, in order, for any overlap of streams (fast-check)', () => {
    let maxDropped = 0;
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4000 }),
        fc.array(fc.nat(), { minLength: 1, maxLength: 12000 }),
        fc.integer(),
        (n, schedule, seed) => {
          const cursors = [...new Set(Array.from({ length: n }, (_, i) => `${(seed ^ (i * 2654435761)) >>> 0}-${i}`.slice(0, 64)))];
          const s = cursorStore({ a: undefined });
          // A stream: its position in the server history (index of the next event to send).
          const index = () => (s.cur.a === undefined ? 0 : cursors.indexOf(s.cur.a) + 1);
          const streams: { pos: Record<string, string | undefined>; next: number }[] = [];
          const got: string[] = [];
          let dropped = 0;
          const take = (st: { pos: Record<string, string | undefined>; next: number }) => {
            const c = cursors[st.next++]!;
            s.take(st.pos, ev('a', c)) ? got.push(c) : dropped++;
          };
          const step = (k: number) => {
            if (!streams.length || k % 5 === 0) return void streams.push({ pos: s.stream(), next: index() });
            const st = streams[k % streams.length]!;
            // A burst: several events from this stream before another gets a turn.
            for (let b = 0; b < (k % 700) + 1 && st.next < cursors.length; b++) take(st);
          };
          schedule.forEach(step);
          for (const st of streams) while (st.next < cursors.length) take(st);
          expect(got).toEqual(cursors);
          maxDropped = Math.max(maxDropped, dropped);
        },
      ),
      { numRuns: 60, seed: 42 },
    );
    // The generator did produce overlaps in the thousands (a replay of that many already-delivered events).
    expect(maxDropped).toBeGreaterThan(2000);
  });
});

describe('validator', () => {
  it('is a strong entity-tag with channels sorted by name', () => {
    expect(validator({ b: 'y-2', a: 'x-1' })).toBe('"a=x-1;b=y-2"');
  });

  it('is undefined while a channel has no cursor', () => {
    expect(validator({ a: 'c1', b: undefined })).toBeUndefined();
  });

  it('round-trips through parseTag, with or without a weak prefix', () => {
    const t = validator({ b: 'y-2', a: 'x-1' })!;
    expect(parseTag(t)).toEqual({ a: 'x-1', b: 'y-2' });
    expect(parseTag('W/' + t)).toEqual({ a: 'x-1', b: 'y-2' });
  });

  it('parses garbage to nothing', () => {
    expect(parseTag(null)).toEqual({});
    expect(parseTag('no-quotes')).toEqual({});
    expect(parseTag('"=x;a"')).toEqual({});
  });
});
