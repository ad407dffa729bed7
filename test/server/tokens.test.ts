import { SignJWT, UnsecuredJWT, errors, jwtVerify } from 'jose';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  cachedSubscriberClaims, MAX_TOKEN_LENGTH, signSubscriberToken, TOKEN_CACHE_MAX_LENGTH, TOKEN_CACHE_SIZE, TokenCache,
  tokenCacheOf, TokenError, verifySubscriberToken,
} from '../../server/auth/tokens.js';

const SECRET = 'tokens-test-secret-0123456789abcdef';
const key = new TextEncoder().encode(SECRET);
const nowS = () => Math.floor(Date.now() / 1000);

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(TokenError);
    return (err as TokenError).code;
  }
  throw new Error('expected a TokenError');
}

function raw(payload: Record<string, unknown>, alg = 'HS256'): Promise<string> {
  return new SignJWT(payload).setProtectedHeader({ alg }).sign(key);
}

describe('subscriber tokens', () => {
  it('verifies a token it signed and returns sub, ch and exp', async () => {
    const t = await signSubscriberToken(SECRET, { sub: 'u42', ch: ['user:42', 'news'], ttlSeconds: 60 });
    const c = await verifySubscriberToken(SECRET, t);
    expect(c.sub).toBe('u42');
    expect(c.ch).toEqual(['user:42', 'news']);
    expect(c.exp).toBeGreaterThanOrEqual(nowS() + 59);
  });

  it.each([[undefined], [null], ['']])('says missing for %j', async (t) => {
    expect(await code(verifySubscriberToken(SECRET, t))).toBe('missing');
  });

  it('says invalid for a token signed with another secret', async () => {
    const t = await signSubscriberToken('another-secret-another-secret-xx', { sub: 'u', ch: [], ttlSeconds: 60 });
    expect(await code(verifySubscriberToken(SECRET, t))).toBe('invalid');
  });

  it('says invalid for garbage and for a tampered payload', async () => {
    expect(await code(verifySubscriberToken(SECRET, 'not.a.jwt'))).toBe('invalid');
    const t = await signSubscriberToken(SECRET, { sub: 'u', ch: ['a'], ttlSeconds: 60 });
    const [h, , s] = t.split('.');
    const forged = Buffer.from(JSON.stringify({ sub: 'u', ch: ['admin'], exp: nowS() + 60 })).toString('base64url');
    expect(await code(verifySubscriberToken(SECRET, `${h}.${forged}.${s}`))).toBe('invalid');
  });

  it('refuses alg "none" and algorithms other than HS256', async () => {
    const none = new UnsecuredJWT({ sub: 'u', ch: [] }).setExpirationTime('1h').encode();
    expect(await code(verifySubscriberToken(SECRET, none))).toBe('invalid');
    const hs512 = await raw({ sub: 'u', ch: [], exp: nowS() + 60 }, 'HS512');
    expect(await code(verifySubscriberToken(SECRET, hs512))).toBe('invalid');
  });

  it('says expired at exp and valid one second before', async () => {
    const t = await signSubscriberToken(SECRET, { sub: 'u', ch: [], ttlSeconds: 10 }, 1_000_000_000_000);
    await expect(verifySubscriberToken(SECRET, t, new Date(1_000_000_009_000))).resolves.toMatchObject({ sub: 'u' });
    expect(await code(verifySubscriberToken(SECRET, t, new Date(1_000_000_010_000)))).toBe('expired');
  });

  it('requires exp', async () => {
    expect(await code(verifySubscriberToken(SECRET, await raw({ sub: 'u', ch: [] })))).toBe('bad-claims');
  });

  it.each([
    ['sub missing', { ch: ['a'] }],
    ['sub not a string', { sub: 42, ch: ['a'] }],
    ['ch missing', { sub: 'u' }],
    ['ch not an array', { sub: 'u', ch: 'a' }],
    ['ch with a bad name', { sub: 'u', ch: ['ok', 'bad name'] }],
    ['ch with a non-string', { sub: 'u', ch: [1] }],
  ])('says bad-claims when %s', async (_n, claims) => {
    expect(await code(verifySubscriberToken(SECRET, await raw({ ...claims, exp: nowS() + 60 })))).toBe('bad-claims');
  });

  it('refuses a token longer than the limit before any crypto, and accepts one at the limit', async () => {
    expect(await code(verifySubscriberToken(SECRET, 'x'.repeat(MAX_TOKEN_LENGTH + 1)))).toBe('invalid');
    // At the limit the length check passes and the JWT parser decides (garbage: invalid, but not for length).
    const err = await verifySubscriberToken(SECRET, 'x'.repeat(MAX_TOKEN_LENGTH)).catch((e: TokenError) => e);
    expect((err as TokenError).message).not.toMatch(/longer/);
  });
});

describe('verified-token cache', () => {
  const T0 = 1_000_000_000_000; // ms; tokens below are signed at T0 and verified with an explicit clock
  const claims = (sub: string) => ({ sub, ch: ['a'], exp: T0 / 1000 + 10 });

  function syncCode(f: () => unknown): string {
    try {
      f();
    } catch (err) {
      expect(err).toBeInstanceOf(TokenError);
      return (err as TokenError).code;
    }
    throw new Error('expected a TokenError');
  }

  it('answers a token it verified before synchronously, with the same frozen claims', async () => {
    const t = await signSubscriberToken(SECRET, { sub: 'cached', ch: ['a', 'b'], ttlSeconds: 60 });
    expect(cachedSubscriberClaims(SECRET, t)).toBeUndefined();
    const first = await verifySubscriberToken(SECRET, t);
    const hit = cachedSubscriberClaims(SECRET, t);
    expect(hit).toBe(first);
    expect(await verifySubscriberToken(SECRET, t)).toBe(first);
    expect(Object.isFrozen(first) && Object.isFrozen(first.ch)).toBe(true);
  });

  it('with remember: false, verifies without caching, and still answers from an entry already cached', async () => {
    const t = await signSubscriberToken(SECRET, { sub: 'once', ch: ['a'], ttlSeconds: 60 });
    const before = tokenCacheOf(SECRET).size;
    const first = await verifySubscriberToken(SECRET, t, undefined, false);
    expect(first.ch).toEqual(['a']);
    expect(cachedSubscriberClaims(SECRET, t)).toBeUndefined();
    expect(tokenCacheOf(SECRET).size).toBe(before);
    const cached = await verifySubscriberToken(SECRET, t);
    expect(await verifySubscriberToken(SECRET, t, undefined, false)).toBe(cached);
  });

  it('rejects an expired token even when cached, and forgets it', async () => {
    const t = await signSubscriberToken(SECRET, { sub: 'exp', ch: [], ttlSeconds: 10 }, T0);
    await verifySubscriberToken(SECRET, t, new Date(T0 + 9_999));
    expect(cachedSubscriberClaims(SECRET, t, new Date(T0 + 9_999))?.sub).toBe('exp');
    // At exp, as jose: exp <= now is expired.
    expect(syncCode(() => cachedSubscriberClaims(SECRET, t, new Date(T0 + 10_000)))).toBe('expired');
    expect(cachedSubscriberClaims(SECRET, t, new Date(T0 + 9_999))).toBeUndefined();
    await verifySubscriberToken(SECRET, t, new Date(T0 + 9_999));
    expect(await code(verifySubscriberToken(SECRET, t, new Date(T0 + 10_000)))).toBe('expired');
  });

  it('never hits for the same header and payload with another signature', async () => {
    const t = await signSubscriberToken(SECRET, { sub: 'sig', ch: ['a'], ttlSeconds: 60 });
    await verifySubscriberToken(SECRET, t);
    const [h, p, s] = t.split('.') as [string, string, string];
    // Same payload signed with another secret, and the real signature with one character changed.
    const other = await signSubscriberToken('another-secret-another-secret-xx', { sub: 'sig', ch: ['a'], ttlSeconds: 60 });
    const flipped = `${h}.${p}.${s.slice(0, 5)}${s[5] === 'A' ? 'B' : 'A'}${s.slice(6)}`;
    for (const forged of [`${h}.${p}.${other.split('.')[2]}`, flipped]) {
      expect(cachedSubscriberClaims(SECRET, forged)).toBeUndefined();
      expect(await code(verifySubscriberToken(SECRET, forged))).toBe('invalid');
    }
  });

  it('keeps one cache per secret: a token verified under one secret does not hit under another', async () => {
    const t = await signSubscriberToken(SECRET, { sub: 'u', ch: ['a'], ttlSeconds: 60 });
    await verifySubscriberToken(SECRET, t);
    const other = 'tokens-test-other-secret-0123456789';
    expect(cachedSubscriberClaims(other, t)).toBeUndefined();
    expect(await code(verifySubscriberToken(other, t))).toBe('invalid');
  });

  it('does not cache a token that fails verification', async () => {
    const before = tokenCacheOf(SECRET).size;
    await code(verifySubscriberToken(SECRET, await raw({ sub: 'u', ch: ['bad name'], exp: nowS() + 60 })));
    expect(tokenCacheOf(SECRET).size).toBe(before);
  });

  it('holds exactly maxEntries tokens and evicts the oldest past the limit', () => {
    expect(new TokenCache().maxEntries).toBe(TOKEN_CACHE_SIZE);
    const c = new TokenCache({ maxEntries: 3 });
    for (const k of ['t1', 't2', 't3']) c.set(k, claims(k), undefined);
    expect(c.size).toBe(3);
    for (const k of ['t1', 't2', 't3']) expect(c.get(k, T0)?.sub).toBe(k);
    c.set('t4', claims('t4'), undefined);
    expect(c.size).toBe(3);
    expect(c.get('t1', T0)).toBeUndefined();
    for (const k of ['t2', 't3', 't4']) expect(c.get(k, T0)?.sub).toBe(k);
  });

  it('caches tokens of exactly maxTokenLength characters and not one longer', () => {
    expect(new TokenCache().maxTokenLength).toBe(TOKEN_CACHE_MAX_LENGTH);
    const c = new TokenCache({ maxTokenLength: 8 });
    c.set('x'.repeat(8), claims('at'), undefined);
    c.set('x'.repeat(9), claims('past'), undefined);
    expect(c.get('x'.repeat(8), T0)?.sub).toBe('at');
    expect(c.get('x'.repeat(9), T0)).toBeUndefined();
    expect(c.size).toBe(1);
  });

  it('misses, rather than answers, when the clock is before a cached nbf (jose decides)', () => {
    const c = new TokenCache();
    c.set('t', claims('t'), T0 / 1000 + 5);
    expect(c.get('t', T0 + 5_000)?.sub).toBe('t');
    expect(c.get('t', T0 + 4_999)).toBeUndefined();
  });
});

describe('HS256 verification (synchronous, node:crypto) agrees with jose', () => {
  /** jose's verdict with the options the server used to pass it, mapped to our codes. */
  async function joseCode(token: string, now: Date): Promise<string> {
    try {
      await jwtVerify(token, key, { algorithms: ['HS256'], requiredClaims: ['exp'], currentDate: now });
      return 'ok';
    } catch (err) {
      if (err instanceof errors.JWTExpired) return 'expired';
      if (err instanceof errors.JWTClaimValidationFailed) return 'bad-claims';
      return 'invalid';
    }
  }
  async function ourCode(token: string, now: Date): Promise<string> {
    tokenCacheOf(SECRET).clear();
    try {
      await verifySubscriberToken(SECRET, token, now);
      return 'ok';
    } catch (err) {
      return (err as TokenError).code;
    }
  }

  it('refuses a crit header, a b64 header, padding, and a fourth segment', async () => {
    const exp = nowS() + 60;
    const crit = await new SignJWT({ sub: 'u', ch: [] }).setProtectedHeader({ alg: 'HS256', crit: ['x'], x: 1 } as never).setExpirationTime(exp).sign(key).catch(() => null);
    if (crit) expect(await code(verifySubscriberToken(SECRET, crit))).toBe('invalid');
    const good = await raw({ sub: 'u', ch: [], exp });
    expect(await code(verifySubscriberToken(SECRET, good + '.x'))).toBe('invalid');
    expect(await code(verifySubscriberToken(SECRET, good + '='))).toBe('invalid');
    const [h, p, sig] = good.split('.') as [string, string, string];
    const b64 = Buffer.from(JSON.stringify({ alg: 'HS256', b64: false, crit: ['b64'] })).toString('base64url');
    expect(await code(verifySubscriberToken(SECRET, `${b64}.${p}.${sig}`))).toBe('invalid');
    expect(await code(verifySubscriberToken(SECRET, `${h}.${p}.${sig.slice(0, -2)}`))).toBe('invalid');
  });

  it('says bad-claims for an nbf still ahead, and accepts it from nbf on', async () => {
    const t = await raw({ sub: 'u', ch: [], nbf: 1_000_000_100, exp: 1_000_000_200 });
    expect(await ourCode(t, new Date(1_000_000_099_999))).toBe('bad-claims');
    expect(await ourCode(t, new Date(1_000_000_100_000))).toBe('ok');
  });

  it('gives the same verdict as jose for random claims, times and tampering', async () => {
    const num = fc.oneof(fc.integer({ min: 999_999_990, max: 1_000_000_010 }), fc.constant(undefined), fc.constant('x'), fc.double({ noNaN: true, noDefaultInfinity: true }));
    await fc.assert(fc.asyncProperty(
      fc.record({ exp: num, nbf: num, iat: num }), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 999_999_995, max: 1_000_000_005 }),
      async (times, tamper, nowS) => {
        const payload: Record<string, unknown> = { sub: 'u', ch: ['a'] };
        for (const [k, v] of Object.entries(times)) if (v !== undefined) payload[k] = v;
        let t = await new SignJWT(payload).setProtectedHeader({ alg: 'HS256' }).sign(key);
        const [h, p, s] = t.split('.') as [string, string, string];
        if (tamper === 1) t = `${h}.${p}.${s.startsWith('A') ? 'B' : 'A'}${s.slice(1)}`;
        if (tamper === 2) t = `${h}.${Buffer.from(JSON.stringify({ ...payload, sub: 'v' })).toString('base64url')}.${s}`;
        const now = new Date(nowS * 1000);
        expect(await ourCode(t, now)).toBe(await joseCode(t, now));
      },
    ), { numRuns: 300 });
  });
});
