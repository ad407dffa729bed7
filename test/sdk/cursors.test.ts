import { describe, expect, it } from 'vitest';
import { DEDUP_WINDOW, cursorStore, parseTag, validator } from '../../src/cursors.js';

const ev = (channel: string, cursor: string) => ({ type: 'event' as const, channel, cursor, data: null });

describe('cursor store', () => {
  it('takes a welcome head only for channels without a cursor', () => {
    const s = cursorStore(['a', 'b'], { a: 'x-5' });
    s.heads({ a: 'x-9', b: 'x-1', other: 'x-3' });
    expect(s.get()).toEqual({ a: 'x-5', b: 'x-1' });
  });

  it('moves the cursor on each new event and refuses a repeat', () => {
    const s = cursorStore(['a']);
    expect(s.take(ev('a', 'c1'))).toBe(true);
    expect(s.take(ev('a', 'c2'))).toBe(true);
    expect(s.take(ev('a', 'c1'))).toBe(false);
    expect(s.get()).toEqual({ a: 'c2' });
  });

  it('keeps a reset apart from an event with the same cursor', () => {
    const s = cursorStore(['a']);
    expect(s.take(ev('a', 'c1'))).toBe(true);
    expect(s.take({ type: 'reset', channel: 'a', cursor: 'c1' })).toBe(true);
    expect(s.take({ type: 'reset', channel: 'a', cursor: 'c1' })).toBe(false);
  });

  it('ignores channels it was not created for', () => {
    const s = cursorStore(['a']);
    expect(s.take(ev('z', 'c1'))).toBe(false);
    expect(s.get()).toEqual({});
  });

  it(`remembers exactly the last ${DEDUP_WINDOW} cursors per channel`, () => {
    const s = cursorStore(['a']);
    for (let i = 0; i <= DEDUP_WINDOW; i++) s.take(ev('a', `c${i}`));
    // c0 fell out of the window (DEDUP_WINDOW + 1 taken), c1 is the oldest remembered
    expect(s.take(ev('a', 'c1'))).toBe(false);
    expect(s.take(ev('a', 'c0'))).toBe(true);
  });

  it('saves on every change when given a saver', () => {
    const saved: Record<string, string>[] = [];
    const s = cursorStore(['a', 'b'], {}, (c) => saved.push({ ...c }));
    s.heads({ a: 'h', b: 'h' });
    s.take(ev('a', 'c1'));
    s.take(ev('a', 'c1'));
    expect(saved).toEqual([{ a: 'h', b: 'h' }, { a: 'c1', b: 'h' }]);
  });
});

describe('validator', () => {
  it('is a strong entity-tag with channels sorted by name', () => {
    expect(validator(['user:42', 'news'], { 'user:42': 'lqz3k1-17', news: 'lqz3k1-3' })).toBe('"news=lqz3k1-3;user:42=lqz3k1-17"');
  });

  it('is undefined while a channel has no cursor', () => {
    expect(validator(['a', 'b'], { a: 'c1' })).toBeUndefined();
  });

  it('round-trips through parseTag, with or without a weak prefix', () => {
    const t = validator(['b', 'a'], { a: 'x-1', b: 'y-2' })!;
    expect(parseTag(t)).toEqual({ a: 'x-1', b: 'y-2' });
    expect(parseTag('W/' + t)).toEqual({ a: 'x-1', b: 'y-2' });
  });

  it('parses garbage to nothing', () => {
    expect(parseTag(null)).toEqual({});
    expect(parseTag('no-quotes')).toEqual({});
    expect(parseTag('"=x;a"')).toEqual({});
  });
});
