// Subscriber tokens (PROTOCOL.md "Subscriber tokens"): HS256 JWTs signed with
// jose directly, with the secret every server under test is started with.
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
