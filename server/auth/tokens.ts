// Subscriber tokens (PROTOCOL.md "Subscriber tokens"): JWT, HS256 only, with
// `sub` (string), `ch` (array of channel names) and `exp` (required).
import { errors, jwtVerify, SignJWT } from 'jose';
import { isChannelName } from '../pubsub/channels.js';

/** Stable codes; the HTTP side maps every one of them to 401 (and WebSocket to 4401). */
export type TokenErrorCode = 'missing' | 'invalid' | 'expired' | 'bad-claims';

export class TokenError extends Error {
  constructor(readonly code: TokenErrorCode, message: string) {
    super(message);
    this.name = 'TokenError';
  }
}

export interface SubscriberClaims {
  sub: string;
  ch: string[];
  /** Seconds since the epoch. */
  exp: number;
}

/**
 * A token is at most this long: 64 channels of 128 characters plus the JWT
 * overhead fit with room to spare; longer strings are refused before any crypto.
 */
export const MAX_TOKEN_LENGTH = 16 * 1024;

// Encoding the secret once per distinct secret, not per request.
const keys = new Map<string, Uint8Array>();
function keyOf(secret: string): Uint8Array {
  let k = keys.get(secret);
  if (!k) {
    if (keys.size > 16) keys.clear();
    keys.set(secret, (k = new TextEncoder().encode(secret)));
  }
  return k;
}

export async function verifySubscriberToken(secret: string, token: string | null | undefined, now?: Date): Promise<SubscriberClaims> {
  if (!token) throw new TokenError('missing', 'subscriber token missing');
  if (token.length > MAX_TOKEN_LENGTH) throw new TokenError('invalid', `token longer than ${MAX_TOKEN_LENGTH} characters`);
  let payload: Record<string, unknown>;
  try {
    // Algorithms pinned: no "none", no RS/HS confusion (RFC 8725 §3.1).
    ({ payload } = await jwtVerify(token, keyOf(secret), {
      algorithms: ['HS256'], requiredClaims: ['exp'], ...(now ? { currentDate: now } : {}),
    }));
  } catch (err) {
    if (err instanceof errors.JWTExpired) throw new TokenError('expired', 'token expired');
    if (err instanceof errors.JWTClaimValidationFailed) throw new TokenError('bad-claims', `token claim ${err.claim}: ${err.reason}`);
    throw new TokenError('invalid', 'token invalid');
  }
  const { sub, ch, exp } = payload;
  if (typeof sub !== 'string' || sub === '') throw new TokenError('bad-claims', 'token claim sub must be a non-empty string');
  if (!Array.isArray(ch) || !ch.every(isChannelName)) throw new TokenError('bad-claims', 'token claim ch must be an array of channel names');
  if (typeof exp !== 'number') throw new TokenError('bad-claims', 'token claim exp must be a number');
  return { sub, ch: ch as string[], exp };
}

/** For the demo and tests: sign a token valid for `ttlSeconds` from `now`. */
export async function signSubscriberToken(
  secret: string,
  claims: { sub: string; ch: string[]; ttlSeconds: number },
  now: number = Date.now(),
): Promise<string> {
  const iat = Math.floor(now / 1000);
  return new SignJWT({ ch: claims.ch })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(claims.sub)
    .setIssuedAt(iat)
    .setExpirationTime(iat + claims.ttlSeconds)
    .sign(keyOf(secret));
}
