import { describe, expect, it } from 'vitest';
import { compareCursors, CURSOR_RE, formatCursor, newEpoch, parseCursor } from '../../server/pubsub/cursor.js';

describe('cursor', () => {
  it('makes epochs from base36 start time plus 4 random base36 digits', () => {
    expect(newEpoch(1_700_000_000_000, () => 0)).toBe((1_700_000_000_000).toString(36) + '0000');
    expect(newEpoch(1_700_000_000_000, () => 0.999999999)).toBe((1_700_000_000_000).toString(36) + 'zzzz');
  });

  it('gives two starts in the same millisecond different epochs', () => {
    expect(newEpoch(5, () => 0.1)).not.toBe(newEpoch(5, () => 0.2));
  });

  it('formats cursors inside the protocol alphabet and length', () => {
    const c = formatCursor(newEpoch(Date.UTC(2100, 0, 1), () => 0.5), Number.MAX_SAFE_INTEGER);
    expect(c).toMatch(CURSOR_RE);
  });

  it('round-trips epoch and seq', () => {
    expect(parseCursor(formatCursor('lqz3k1ab', 17))).toEqual({ epoch: 'lqz3k1ab', seq: 17 });
    expect(parseCursor('lqz3k1ab-0')).toEqual({ epoch: 'lqz3k1ab', seq: 0 });
  });

  it.each([
    ['empty', ''],
    ['no seq', 'abc-'],
    ['no epoch', '-3'],
    ['leading zero seq', 'abc-01'],
    ['negative', 'abc--1'],
    ['upper case epoch', 'ABC-1'],
    ['beyond safe integers', 'abc-99999999999999999'],
    ['extra part', 'abc-1-2'],
    ['garbage', 'hello'],
  ])('rejects a malformed cursor: %s', (_name, s) => {
    expect(parseCursor(s)).toBeNull();
  });

  it('orders cursors of one epoch by seq and refuses to order across epochs', () => {
    expect(compareCursors('e-2', 'e-10')).toBeLessThan(0);
    expect(compareCursors('e-10', 'e-2')).toBeGreaterThan(0);
    expect(compareCursors('e-3', 'e-3')).toBe(0);
    expect(compareCursors('e-3', 'f-1')).toBeNull();
    expect(compareCursors('e-3', 'bad')).toBeNull();
  });
});
