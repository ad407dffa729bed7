// The small pure policies behind the HTTP routes: Prefer, X-Poll-Interval, CORS,
// bearer parsing, publish body validation and key comparison.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { corsFor, normalizeOrigin, preflightHeaders } from '../../server/http/cors.js';
import { bearerToken, evaluatePoll, eventMessage, soleCursor } from '../../server/http/poll.js';
import { channelsParam } from '../../server/http/router.js';
import { parseIfNoneMatch, parseValidator } from '../../server/pubsub/validator.js';
import { LAG_X2_MS, LAG_X4_MS, pollIntervalS } from '../../server/http/poll-interval.js';
import { parsePreferWait } from '../../server/http/prefer.js';
import { parsePublishBody, publisherKeyMatches } from '../../server/http/publish.js';
import { MemoryBus } from '../../server/pubsub/memory-bus.js';

describe('parsePreferWait (RFC 7240)', () => {
  it.each([
    [undefined, null],
    ['wait=10', 10],
    ['WAIT = 10', 10],
    ['respond-async, wait=7', 7],
    ['wait=7; foo=bar', 7],
    ['wait="12"', 12],
    ['wait=30', 30],
    ['wait=31', 30],
    ['wait=0', null],
    ['wait=-1', null],
    ['wait=abc', null],
    ['handling=lenient', null],
    ['wait=3, wait=9', 3],
  ] as const)('reads %j as %j with a cap of 30', (h, want) => {
    expect(parsePreferWait(h, 30)).toBe(want);
  });

  it('reads several header lines', () => {
    expect(parsePreferWait(['respond-async', 'wait=4'], 30)).toBe(4);
  });
});

describe('pollIntervalS', () => {
  const idle = { held: 0, maxHeld: 100, lagMs: 0 };
  it('is the base interval when idle', () => {
    expect(pollIntervalS(5, idle)).toBe(5);
  });
  it('doubles at half of maxHeldPolls held, not one below', () => {
    expect(pollIntervalS(5, { ...idle, held: 49 })).toBe(5);
    expect(pollIntervalS(5, { ...idle, held: 50 })).toBe(10);
  });
  it('quadruples at 80% of maxHeldPolls held', () => {
    expect(pollIntervalS(5, { ...idle, held: 79 })).toBe(10);
    expect(pollIntervalS(5, { ...idle, held: 80 })).toBe(20);
  });
  it('follows event-loop lag at its thresholds', () => {
    expect(pollIntervalS(5, { ...idle, lagMs: LAG_X2_MS - 1 })).toBe(5);
    expect(pollIntervalS(5, { ...idle, lagMs: LAG_X2_MS })).toBe(10);
    expect(pollIntervalS(5, { ...idle, lagMs: LAG_X4_MS })).toBe(20);
  });
  it('never asks for less than one second', () => {
    expect(pollIntervalS(0, idle)).toBe(1);
  });
});

describe('CORS policy', () => {
  it('reflects any Origin when the allow-list is empty', () => {
    expect(corsFor('https://a.example', [])).toMatchObject({ kind: 'allowed', headers: { 'Access-Control-Allow-Origin': 'https://a.example' } });
  });
  it('compares origins case-insensitively and ignores a trailing slash in the config', () => {
    expect(corsFor('https://A.example', ['https://a.example/']).kind).toBe('allowed');
    expect(normalizeOrigin('HTTPS://X.example/')).toBe('https://x.example');
  });
  it('forbids an origin off the list, and lets requests without Origin through', () => {
    expect(corsFor('https://b.example', ['https://a.example']).kind).toBe('forbidden');
    expect(corsFor(undefined, ['https://a.example'])).toEqual({ kind: 'none', headers: { Vary: 'Origin' } });
  });
  it('lists Authorization by name in a preflight (a "*" would not cover it)', () => {
    expect(preflightHeaders('https://a.example')['Access-Control-Allow-Headers']).toContain('Authorization');
  });
});

describe('bearerToken', () => {
  it.each([
    ['Bearer abc.def-ghi_', 'abc.def-ghi_'],
    ['bearer abc', 'abc'],
    ['Bearer  abc ', 'abc'],
    ['Basic abc', null],
    ['Bearer', null],
    ['Bearer a b', null],
    [undefined, null],
  ])('reads %j as %j', (h, want) => {
    expect(bearerToken(h)).toBe(want);
  });
});

describe('channelsParam', () => {
  const viaUrl = (t: string) => new URL(t, 'http://localhost').searchParams.getAll('channels').join(',');

  it.each([
    '/v1/poll', '/v1/poll?', '/v1/poll?channels=a', '/v1/poll?channels=a,b&channels=c', '/v1/poll?x=1&channels=a',
    '/v1/poll?channels', '/v1/poll?channels=a=b', '/v1/poll?&&channels=a&', '/v1/poll?channels=a%2Cb', '/v1/poll?channels=a+b',
    '/v1/poll?channels=a#b', '/v1/./poll?channels=a', '/v1/poll?channels=user:42,news', '/v1/poll?Channels=a',
  ])('reads %j as the URL parser does', (t) => {
    expect(channelsParam(t)).toBe(viaUrl(t));
  });

  it('agrees with the URL parser on any query (property)', () => {
    const piece = fc.constantFrom('channels', '=', '&', ',', 'a', 'b:1', '%2C', '%', '+', '#', '?', '.', '-', '~', ' ', 'é');
    fc.assert(fc.property(fc.array(piece, { maxLength: 12 }), (parts) => {
      const t = '/v1/poll?' + parts.join('');
      expect(channelsParam(t)).toBe(viaUrl(t));
    }));
  });
});

describe('soleCursor (the one-channel fast path)', () => {
  it.each([
    ['"a=x-1"', 'x-1'],
    ['W/"a=x-1"', 'x-1'],
    ['"a=x-1", "a=x-2"', null],
    ['"b=x-1"', null],
    ['"ab=x-1"', null],
    ['"a=x-1;b=x-2"', null],
    ['"a=x+1"', null],
    ['"a="', null],
    ['"a"', null],
    ['w/"a=x-1"', null],
    ['"', null],
    ['*', null],
  ])('reads %j as %j', (inm, want) => {
    expect(soleCursor(inm, 'a')).toBe(want);
  });

  it('only ever answers what parseIfNoneMatch and parseValidator make of the header (property)', () => {
    const piece = fc.constantFrom('"', 'W/', 'w/', 'a', 'user:42', '=', 'x-1', '-', ';', ',', ' ', '+', 'b=');
    fc.assert(fc.property(fc.array(piece, { maxLength: 10 }), fc.constantFrom('a', 'user:42'), (parts, ch) => {
      const inm = parts.join('');
      const c = soleCursor(inm, ch);
      if (c === null) return;
      const parsed = parseIfNoneMatch(inm);
      expect(parsed.kind).toBe('tags');
      if (parsed.kind !== 'tags') return;
      expect(parsed.tags).toHaveLength(1);
      const v = parseValidator(parsed.tags[0]!.opaque);
      expect(v.ok && [...v.cursors]).toEqual([[ch, c]]);
    }));
  });
});

describe('parsePublishBody', () => {
  const cfg = { maxBatch: 2, maxMessageBytes: 10 };
  it('accepts a single event and serializes data once', () => {
    expect(parsePublishBody({ channel: 'a', data: { x: 1 } }, cfg)).toEqual({ ok: true, batch: false, events: [{ channel: 'a', json: '{"x":1}' }] });
  });
  it('accepts null as data', () => {
    expect(parsePublishBody({ channel: 'a', data: null }, cfg)).toMatchObject({ ok: true, events: [{ json: 'null' }] });
  });
  it('names the failing batch item', () => {
    const r = parsePublishBody({ events: [{ channel: 'a', data: 1 }, { channel: 'a' }] }, cfg);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.message).toMatch(/^events\[1\]/);
  });
  it('answers too_large for a batch over maxBatch and data over maxMessageBytes', () => {
    const big = parsePublishBody({ events: [1, 2, 3].map((d) => ({ channel: 'a', data: d })) }, cfg);
    expect(big.ok ? null : big.error.code).toBe('too_large');
    const long = parsePublishBody({ channel: 'a', data: 'x'.repeat(9) }, cfg);
    expect(long.ok ? null : [long.error.code, long.error.status]).toEqual(['too_large', 413]);
  });
});

describe('publisherKeyMatches', () => {
  it('matches only the exact key', () => {
    expect(publisherKeyMatches('k1', 'k1')).toBe(true);
    expect(publisherKeyMatches('k1 ', 'k1')).toBe(false);
    expect(publisherKeyMatches('k', 'k1')).toBe(false);
    expect(publisherKeyMatches(null, 'k1')).toBe(false);
  });
  it('never matches when no key is configured', () => {
    expect(publisherKeyMatches('', '')).toBe(false);
  });
});

describe('evaluatePoll', () => {
  it('puts each channel\'s messages in channel-name order, events in publish order', async () => {
    const bus = new MemoryBus({ epoch: 'e' });
    await bus.publish([{ channel: 'b', json: '1' }, { channel: 'a', json: '2' }, { channel: 'b', json: '3' }]);
    const out = await evaluatePoll(bus, ['a', 'b'], [new Map([['a', 'e-0'], ['b', 'e-0']])]);
    expect(out.kind).toBe('changed');
    if (out.kind !== 'changed') return;
    expect(out.messages.map((m) => JSON.parse(m).data)).toEqual([2, 1, 3]);
    expect(out.etag).toBe('"a=e-1;b=e-2"');
  });

  describe('byte budget', () => {
    // Every message here has the same length: {"type":"event","channel":"a","cursor":"e-N","data":N}
    const L = eventMessage({ channel: 'a', cursor: 'e-1', json: '1' }).length;
    async function fivePublished() {
      const bus = new MemoryBus({ epoch: 'e' });
      await bus.publish([1, 2, 3, 4, 5].map((n) => ({ channel: 'a', json: String(n) })));
      await bus.publish([{ channel: 'b', json: '9' }]);
      return bus;
    }
    const from0 = () => [new Map([['a', 'e-0'], ['b', 'e-0']])];

    it('carries exactly as many messages as fit the budget (at the limit)', async () => {
      const out = await evaluatePoll(await fivePublished(), ['a', 'b'], from0(), 2 * (L + 1));
      expect(out).toMatchObject({ kind: 'changed', more: true, etag: '"a=e-2;b=e-0"' });
      if (out.kind === 'changed') expect(out.messages).toHaveLength(2);
    });

    it('stops one message earlier one byte under it (past the limit)', async () => {
      const out = await evaluatePoll(await fivePublished(), ['a', 'b'], from0(), 2 * (L + 1) - 1);
      expect(out).toMatchObject({ kind: 'changed', more: true, etag: '"a=e-1;b=e-0"' });
    });

    it('always sends the first message, whatever its size', async () => {
      const out = await evaluatePoll(await fivePublished(), ['a', 'b'], from0(), 1);
      expect(out).toMatchObject({ kind: 'changed', more: true, etag: '"a=e-1;b=e-0"' });
    });

    it('says there is no more when everything fitted', async () => {
      const out = await evaluatePoll(await fivePublished(), ['a', 'b'], from0(), 1 << 20);
      expect(out).toMatchObject({ kind: 'changed', more: false, etag: '"a=e-5;b=e-1"' });
    });

    it('keeps the client cursor for a reset that did not fit, so the reset comes next time', async () => {
      const bus = await fivePublished();
      const out = await evaluatePoll(bus, ['a', 'b'], [new Map([['a', 'e-0'], ['b', 'other-1']])], L + 1);
      expect(out).toMatchObject({ kind: 'changed', more: true, etag: '"a=e-1;b=other-1"' });
    });
  });

  it('following the ETag from any cursor yields every later event once, in order, or one reset (any budget)', async () => {
    await fc.assert(fc.asyncProperty(
      fc.integer({ min: 1, max: 6 }), fc.integer({ min: 0, max: 15 }), fc.integer({ min: 0, max: 18 }), fc.integer({ min: 1, max: 400 }),
      async (cap, n, from, budget) => {
        const bus = new MemoryBus({ history: cap, epoch: 'e' });
        if (n > 0) await bus.publish(Array.from({ length: n }, (_, i) => ({ channel: 'a', json: String(i + 1) })));
        let tag = `a=e-${from}`;
        const got: string[] = [];
        for (let round = 0; round < 50; round++) {
          const out = await evaluatePoll(bus, ['a'], [new Map([['a', tag.split('=')[1]!]])], budget);
          if (out.kind === 'not-modified') break;
          for (const m of out.messages) {
            const msg = JSON.parse(m);
            got.push(msg.type === 'reset' ? `reset@${msg.cursor}` : String(msg.data));
          }
          tag = out.etag.slice(1, -1);
        }
        const replayable = from <= n && from >= n - cap;
        const want = replayable
          ? Array.from({ length: n - from }, (_, i) => String(from + i + 1))
          : [`reset@e-${n}`];
        expect(got).toEqual(want);
        expect(tag).toBe(`a=e-${n}`);
      },
    ));
  });
});
