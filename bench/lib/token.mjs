// Subscriber tokens (PROTOCOL.md "Subscriber tokens"): HS256 JWTs signed with
// jose directly, with the secret every server under test is started with.
import { createHmac } from 'node:crypto';
import { SignJWT } from 'jose';

export const BENCH_SECRET = 'bench-subscriber-secret-0123456789abcdef0123456789';
export const BENCH_PUBLISHER_KEY = 'bench-publisher-key-0123456789abcdef';

const key = new TextEncoder().encode(BENCH_SECRET);

export function signToken(sub, channels, ttlSeconds = 3600, secret = key) {
  return new SignJWT({ ch: channels })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSeconds)
    .sign(secret);
}

const HEADER = Buffer.from('{"alg":"HS256","typ":"JWT"}').toString('base64url');

/**
 * The same kind of token, signed synchronously with node:crypto (~10 µs instead
 * of jose's ~100 µs WebCrypto job): a loader opening tens of thousands of
 * per-user clients must not spend the CPU the server under test needs.
 */
export function signTokenSync(sub, channels, ttlSeconds = 3600, secret = BENCH_SECRET) {
  const iat = Math.floor(Date.now() / 1000);
  const body = `${HEADER}.${Buffer.from(JSON.stringify({ ch: channels, sub, iat, exp: iat + ttlSeconds })).toString('base64url')}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}
