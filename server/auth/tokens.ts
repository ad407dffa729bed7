// Subscriber tokens (PROTOCOL.md "Subscriber tokens"): JWT, HS256 only, with
// `sub` (string), `ch` (array of channel names) and `exp` (required).
import { createSecretKey, type KeyObject } from 'node:crypto';
import { decodeProtectedHeader, errors, jwtVerify, SignJWT } from 'jose';
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
  /** Frozen: the cache hands the same claims to every request with this token. */
  ch: string[];
  /** Seconds since the epoch. */
  exp: number;
}

/**
 * A token is at most this long: 64 channels of 128 characters plus the JWT
 * overhead fit with room to spare; longer strings are refused before any crypto.
 */
export const MAX_TOKEN_LENGTH = 16 * 1024;

/**
 * Verified tokens remembered per secret. A poller sends the same token every few
 * seconds for its token's lifetime; verifying it each time (jose: base64 and JSON
 * decoding, an HMAC on libuv's thread pool, a promise chain) cost ~100 µs of CPU
 * per poll, ten times a bare 304. 10,000 covers the pollers of one node; past it
 * the oldest entry goes (FIFO: a hit costs no reordering).
 */
export const TOKEN_CACHE_SIZE = 10_000;
/**
 * Longer tokens are verified every time, never cached, so the cache holds at most
 * TOKEN_CACHE_SIZE × (token + claims) ≈ 10,000 × 4 KB = 40 MB; typical tokens
 * (a few channels, ~250 characters) keep it near 5 MB.
 */
export const TOKEN_CACHE_MAX_LENGTH = 2048;

interface Cached {
  claims: SubscriberClaims;
  /** jose refuses a token whose nbf is still ahead; a cached one must be refused alike. */
  nbf: number | undefined;
}

/**
 * Token string -> claims, for tokens whose signature and claims have been
 * verified. Keyed by the exact token string: any other signature, header or
 * payload is another key and goes through full verification. An entry is good
 * until its `exp`; an expired one is answered `expired` and dropped.
 */
export class TokenCache {
  private readonly entries = new Map<string, Cached>();
  readonly maxEntries: number;
  readonly maxTokenLength: number;

  constructor(opts: { maxEntries?: number; maxTokenLength?: number } = {}) {
    this.maxEntries = opts.maxEntries ?? TOKEN_CACHE_SIZE;
    this.maxTokenLength = opts.maxTokenLength ?? TOKEN_CACHE_MAX_LENGTH;
  }

  get size(): number {
    return this.entries.size;
  }

  /**
   * The claims of a verified token, or undefined when not cached (verify it).
   * Throws TokenError('expired') at and after `exp`, as jose would (exp <= now).
   */
  get(token: string, nowMs: number): SubscriberClaims | undefined {
    const e = this.entries.get(token);
    if (e === undefined) return undefined;
    const nowS = Math.floor(nowMs / 1000); // jose's epoch(): whole seconds
    if (e.claims.exp <= nowS) {
      this.entries.delete(token);
      throw new TokenError('expired', 'token expired');
    }
    // Only reachable with a clock that went back (tests pass `now`): let jose decide.
    if (e.nbf !== undefined && e.nbf > nowS) return undefined;
    return e.claims;
  }

  set(token: string, claims: SubscriberClaims, nbf: number | undefined): void {
    if (token.length > this.maxTokenLength || this.maxEntries <= 0) return;
    this.entries.delete(token);
    while (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(token, { claims, nbf });
  }

  clear(): void {
    this.entries.clear();
  }
}

interface Verifier {
  /** A KeyObject, not the secret's bytes: jose imports a Uint8Array into a CryptoKey
   *  on every call, but converts a KeyObject once and remembers it. */
  key: KeyObject;
  cache: TokenCache;
}

// One key and one cache per distinct secret, not per request. A server has one
// secret; tests and several in-process servers have a few. Past this many the
// map starts over rather than grow (a KeyObject and a full cache each).
export const MAX_SECRETS = 16;
const verifiers = new Map<string, Verifier>();
function verifierOf(secret: string): Verifier {
  let v = verifiers.get(secret);
  if (!v) {
    if (verifiers.size >= MAX_SECRETS) verifiers.clear();
    verifiers.set(secret, (v = { key: createSecretKey(Buffer.from(secret, 'utf8')), cache: new TokenCache() }));
  }
  return v;
}

/** The verified-token cache for `secret` (tests, and callers that want to drop it). */
export function tokenCacheOf(secret: string): TokenCache {
  return verifierOf(secret).cache;
}

/** One accepted subscriber secret; `kid` (JWT header) names it during a rotation. */
export interface SubscriberKey {
  kid: string | null;
  secret: string;
}

/**
 * A secret, or several (a rotation: the first signs, all verify). A token whose
 * header names a `kid` of the ring is checked against that secret only; a token
 * without `kid`, or with one the ring does not name, is tried against each
 * secret without a kid, then (no kid at all) each secret, in order.
 */
export type SecretSource = string | readonly SubscriberKey[];

/**
 * The claims of `token` when a previous verification under `secret` is still good,
 * synchronously; undefined when it needs full verification. Throws TokenError
 * like verifySubscriberToken for a missing, overlong or expired token.
 */
export function cachedSubscriberClaims(secret: SecretSource, token: string | null | undefined, now?: Date): SubscriberClaims | undefined {
  if (!token) throw new TokenError('missing', 'subscriber token missing');
  if (token.length > MAX_TOKEN_LENGTH) throw new TokenError('invalid', `token longer than ${MAX_TOKEN_LENGTH} characters`);
  const t = now ? now.getTime() : Date.now();
  if (typeof secret === 'string') return verifierOf(secret).cache.get(token, t);
  for (const k of secret) {
    const hit = verifierOf(k.secret).cache.get(token, t);
    if (hit !== undefined) return hit;
  }
  return undefined;
}

/** The secrets to try for `token`, in order (see SecretSource). */
function candidates(ring: readonly SubscriberKey[], token: string): readonly SubscriberKey[] {
  if (ring.length === 1) return ring;
  let kid: unknown;
  try {
    kid = decodeProtectedHeader(token).kid;
  } catch {
    throw new TokenError('invalid', 'token invalid');
  }
  if (typeof kid === 'string') {
    const named = ring.filter((k) => k.kid === kid);
    if (named.length > 0) return named;
    const plain = ring.filter((k) => k.kid === null);
    if (plain.length > 0) return plain;
    throw new TokenError('invalid', `token kid "${kid.slice(0, 64)}" names no configured secret`);
  }
  return ring;
}

export async function verifySubscriberToken(secret: SecretSource, token: string | null | undefined, now?: Date): Promise<SubscriberClaims> {
  const hit = cachedSubscriberClaims(secret, token, now);
  if (hit !== undefined) return hit;
  if (typeof secret === 'string') return verifyWith(secret, token!, now);
  let last: unknown = new TokenError('invalid', 'token invalid');
  for (const k of candidates(secret, token!)) {
    try {
      return await verifyWith(k.secret, token!, now);
    } catch (err) {
      // A bad signature means "not this secret": try the next. Anything else (expired,
      // bad claims) comes after the signature matched: that is the answer.
      if (!(err instanceof TokenError) || err.code !== 'invalid') throw err;
      last = err;
    }
  }
  throw last;
}

async function verifyWith(secret: string, token: string, now: Date | undefined): Promise<SubscriberClaims> {
  const { key, cache } = verifierOf(secret);
  let payload: Record<string, unknown>;
  try {
    // Algorithms pinned: no "none", no RS/HS confusion (RFC 8725 §3.1).
    ({ payload } = await jwtVerify(token!, key, {
      algorithms: ['HS256'], requiredClaims: ['exp'], ...(now ? { currentDate: now } : {}),
    }));
  } catch (err) {
    if (err instanceof errors.JWTExpired) throw new TokenError('expired', 'token expired');
    if (err instanceof errors.JWTClaimValidationFailed) throw new TokenError('bad-claims', `token claim ${err.claim}: ${err.reason}`);
    throw new TokenError('invalid', 'token invalid');
  }
  const { sub, ch, exp, nbf } = payload;
  if (typeof sub !== 'string' || sub === '') throw new TokenError('bad-claims', 'token claim sub must be a non-empty string');
  if (!Array.isArray(ch) || !ch.every(isChannelName)) throw new TokenError('bad-claims', 'token claim ch must be an array of channel names');
  if (typeof exp !== 'number') throw new TokenError('bad-claims', 'token claim exp must be a number');
  // Frozen: every later request with this token shares the object.
  const claims: SubscriberClaims = Object.freeze({ sub, ch: Object.freeze(ch) as string[], exp });
  cache.set(token!, claims, typeof nbf === 'number' ? nbf : undefined);
  return claims;
}

/** Sign a token valid for `ttlSeconds` from `now` (demo, `tidings-server token`, tests); with a ring, its first secret and kid. */
export async function signSubscriberToken(
  secret: SecretSource,
  claims: { sub: string; ch: string[]; ttlSeconds: number },
  now: number = Date.now(),
): Promise<string> {
  const iat = Math.floor(now / 1000);
  const k: SubscriberKey = typeof secret === 'string' ? { kid: null, secret } : secret[0]!;
  return new SignJWT({ ch: claims.ch })
    .setProtectedHeader(k.kid === null ? { alg: 'HS256', typ: 'JWT' } : { alg: 'HS256', typ: 'JWT', kid: k.kid })
    .setSubject(claims.sub)
    .setIssuedAt(iat)
    .setExpirationTime(iat + claims.ttlSeconds)
    .sign(verifierOf(k.secret).key);
}
