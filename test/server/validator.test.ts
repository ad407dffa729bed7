import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { buildValidator, matchesHeads, parseIfNoneMatch, parseValidator } from '../../server/pubsub/validator.js';

describe('buildValidator', () => {
  it('lists one cursor per channel, channels sorted by name, quoted', () => {
    expect(buildValidator(new Map([['user:42', 'lqz3k1-17'], ['news', 'lqz3k1-3']]))).toBe('"news=lqz3k1-3;user:42=lqz3k1-17"');
  });

  it('sorts by code unit, not locale (upper case before lower case)', () => {
    expect(buildValidator([['b', 'x-1'], ['B', 'x-2'], ['a', 'x-3']])).toBe('"B=x-2;a=x-3;b=x-1"');
  });
});

describe('parseIfNoneMatch', () => {
  it('reads one strong tag', () => {
    expect(parseIfNoneMatch('"a=e-1"')).toEqual({ kind: 'tags', tags: [{ weak: false, opaque: 'a=e-1' }] });
  });

  it('reads a weak tag (RFC 9110 §13.1.2 compares weakly, so W/ is kept only as a flag)', () => {
    expect(parseIfNoneMatch('W/"a=e-1"')).toEqual({ kind: 'tags', tags: [{ weak: true, opaque: 'a=e-1' }] });
  });

  it('reads a comma list with OWS and empty elements', () => {
    expect(parseIfNoneMatch(' "a=e-1" ,, W/"b=e-2",\t"" ')).toEqual({
      kind: 'tags',
      tags: [{ weak: false, opaque: 'a=e-1' }, { weak: true, opaque: 'b=e-2' }, { weak: false, opaque: '' }],
    });
  });

  it('keeps commas that are inside a quoted tag', () => {
    expect(parseIfNoneMatch('"x,y", "z"')).toEqual({ kind: 'tags', tags: [{ weak: false, opaque: 'x,y' }, { weak: false, opaque: 'z' }] });
  });

  it('reads * as "any current representation"', () => {
    expect(parseIfNoneMatch(' * ')).toEqual({ kind: 'any' });
  });

  it.each([
    ['unquoted', 'a=e-1'],
    ['lower-case weak prefix', 'w/"a=e-1"'],
    ['unterminated', '"a=e-1'],
    ['junk after a tag', '"a" b'],
    ['only commas', ' , ,'],
    ['star in a list', '*, "a"'],
    ['control character', '"a\u0001"'],
    ['empty', ''],
  ])('rejects %s', (_name, h) => {
    expect(parseIfNoneMatch(h).kind).toBe('invalid');
  });
});

describe('parseValidator', () => {
  it('reads channel=cursor pairs', () => {
    const r = parseValidator('news=lqz3k1-3;user:42=lqz3k1-17');
    expect(r).toEqual({ ok: true, cursors: new Map([['news', 'lqz3k1-3'], ['user:42', 'lqz3k1-17']]) });
  });

  it('accepts pairs in any order (a client may build it itself)', () => {
    expect(parseValidator('b=e-1;a=e-2').ok).toBe(true);
  });

  it('reads an empty tag as no channels', () => {
    expect(parseValidator('')).toEqual({ ok: true, cursors: new Map() });
  });

  it('accepts a well-formed cursor it cannot replay from (the bus resets it, no 400)', () => {
    expect(parseValidator('a=from.another_server').ok).toBe(true);
  });

  it.each([
    ['missing cursor', 'a'],
    ['empty cursor', 'a='],
    ['bad channel', 'a b=e-1'],
    ['cursor outside the alphabet', 'a=e+1'],
    ['cursor longer than 64', `a=${'x'.repeat(65)}`],
    ['channel twice', 'a=e-1;a=e-2'],
    ['trailing separator', 'a=e-1;'],
  ])('rejects %s', (_name, v) => {
    expect(parseValidator(v).ok).toBe(false);
  });

  it('round-trips anything buildValidator makes', () => {
    const name = fc.stringMatching(/^[A-Za-z0-9:_.\-]{1,20}$/);
    const cursor = fc.stringMatching(/^[0-9A-Za-z_.\-]{1,64}$/);
    fc.assert(fc.property(fc.dictionary(name, cursor), (d) => {
      const m = new Map(Object.entries(d));
      const tag = buildValidator(m);
      const parsed = parseIfNoneMatch(tag);
      expect(parsed.kind).toBe('tags');
      if (parsed.kind !== 'tags') return;
      const v = parseValidator(parsed.tags[0]!.opaque);
      expect(v).toEqual({ ok: true, cursors: m });
    }));
  });
});

describe('matchesHeads', () => {
  const heads = new Map([['a', 'e-1'], ['b', 'e-2']]);
  it('matches when every requested channel is at its head', () => {
    expect(matchesHeads(new Map([['a', 'e-1'], ['b', 'e-2'], ['extra', 'e-9']]), heads)).toBe(true);
  });
  it('does not match when one channel is behind or missing', () => {
    expect(matchesHeads(new Map([['a', 'e-1'], ['b', 'e-1']]), heads)).toBe(false);
    expect(matchesHeads(new Map([['a', 'e-1']]), heads)).toBe(false);
  });
});
