import { SignJWT, UnsecuredJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { MAX_TOKEN_LENGTH, signSubscriberToken, TokenError, verifySubscriberToken } from '../../server/auth/tokens.js';

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
