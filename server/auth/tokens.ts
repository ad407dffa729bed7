// Subscriber tokens (PROTOCOL.md "Subscriber tokens"): JWT, HS256 only, with
// `sub` (string), `ch` (array of channel names) and `exp` (required).
//
// Verification is written here, not left to jose: jose 6 verifies through
// WebCrypto, an async job on libuv's thread pool with a promise chain around
// it, measured at ~110 µs of CPU per token (~200 µs one at a time), against
// ~14 µs for a synchronous node:crypto HMAC. Every new WebSocket subscriber
// brings a token, so that was a fifth of a connection's CPU in a connect
// storm. HS256 with pinned algorithm is small enough to do exactly (RFC 7515
// §5.2, RFC 7519 §7.2, RFC 8725); jose still signs (demo, CLI, tests), loaded
// only when something signs so that serving processes never load it.
import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto';
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
  /** A token whose nbf is still ahead is refused; a cached one must be refused alike. */
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
    // Only reachable with a clock that went back (tests pass `now`): verify in full.
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

const B64URL = /^[A-Za-z0-9_-]*$/;

/** A base64url segment decoded and parsed as a JSON object, or null. */
function jsonSegment(seg: string): Record<string, unknown> | null {
  if (!B64URL.test(seg)) return null;
  try {
    const v: unknown = JSON.parse(Buffer.from(seg, 'base64url').toString('utf8'));
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/**
 * The payload of a compact JWS whose signature is a valid HS256 MAC under
 * `key`, or null. The algorithm is pinned (no "none", no RS/HS confusion:
 * RFC 8725 §3.1); a `crit` header or an unencoded payload (`b64`) is not
 * supported, so refused (RFC 7515 §4.1.11). Constant-time comparison.
 */
export function verifyHs256(token: string, key: KeyObject): Record<string, unknown> | null {
  const a = token.indexOf('.');
  const b = token.indexOf('.', a + 1);
  if (a <= 0 || b <= a || token.indexOf('.', b + 1) !== -1) return null;
  const header = jsonSegment(token.slice(0, a));
  if (header === null || header.alg !== 'HS256' || header.crit !== undefined || header.b64 !== undefined) return null;
  const sigText = token.slice(b + 1);
  if (!B64URL.test(sigText)) return null;
  const sig = Buffer.from(sigText, 'base64url');
  const mac = createHmac('sha256', key).update(token.slice(0, b)).digest();
  if (sig.length !== mac.length || !timingSafeEqual(sig, mac)) return null;
  return jsonSegment(token.slice(a + 1, b));
}

/** RFC 7519 §4.1.4/§4.1.5 with no leeway: expired at exp, not valid before nbf. */
function checkTimes(payload: Record<string, unknown>, nowS: number): void {
  const { exp, nbf, iat } = payload;
  if (exp === undefined) throw new TokenError('bad-claims', 'token claim exp: missing');
  if (typeof exp !== 'number' || !Number.isFinite(exp)) throw new TokenError('bad-claims', 'token claim exp must be a number');
  if (nbf !== undefined && (typeof nbf !== 'number' || !Number.isFinite(nbf))) throw new TokenError('bad-claims', 'token claim nbf must be a number');
  if (iat !== undefined && (typeof iat !== 'number' || !Number.isFinite(iat))) throw new TokenError('bad-claims', 'token claim iat must be a number');
  if (typeof nbf === 'number' && nbf > nowS) throw new TokenError('bad-claims', 'token claim nbf: not yet valid');
  if (exp <= nowS) throw new TokenError('expired', 'token expired');
}

/** The secrets to try for `token`, in order (see SecretSource). */
function candidates(ring: readonly SubscriberKey[], token: string): readonly SubscriberKey[] {
  if (ring.length === 1) return ring;
  const header = jsonSegment(token.slice(0, Math.max(0, token.indexOf('.'))));
  if (header === null) throw new TokenError('invalid', 'token invalid');
  const kid = header.kid;
  if (typeof kid === 'string') {
    const named = ring.filter((k) => k.kid === kid);
    if (named.length > 0) return named;
    const plain = ring.filter((k) => k.kid === null);
    if (plain.length > 0) return plain;
    throw new TokenError('invalid', `token kid "${kid.slice(0, 64)}" names no configured secret`);
  }
  return ring;
}

/**
 * `remember: false` verifies without adding the token to the cache (a cached
 * token still answers from it). For a WebSocket hello: a socket shows its token
 * once, so an entry per connection would hold ~0.5 KB (token, claims) for
 * nothing and, past TOKEN_CACHE_SIZE sockets in one process, push out the
 * pollers' entries the cache is there for.
 */
export async function verifySubscriberToken(secret: SecretSource, token: string | null | undefined, now?: Date, remember = true): Promise<SubscriberClaims> {
  const hit = cachedSubscriberClaims(secret, token, now);
  if (hit !== undefined) return hit;
  if (typeof secret === 'string') return verifyWith(secret, token!, now, remember);
  // Built only when every secret failed: an Error captures a stack trace (~20 µs), per new subscriber otherwise.
  let last: unknown = null;
  for (const k of candidates(secret, token!)) {
    try {
      return await verifyWith(k.secret, token!, now, remember);
    } catch (err) {
      // A bad signature means "not this secret": try the next. Anything else (expired,
      // bad claims) comes after the signature matched: that is the answer.
      if (!(err instanceof TokenError) || err.code !== 'invalid') throw err;
      last = err;
    }
  }
  throw last ?? new TokenError('invalid', 'token invalid');
}

async function verifyWith(secret: string, token: string, now: Date | undefined, remember: boolean): Promise<SubscriberClaims> {
  const { key, cache } = verifierOf(secret);
  const payload = verifyHs256(token, key);
  if (payload === null) throw new TokenError('invalid', 'token invalid');
  checkTimes(payload, Math.floor((now ? now.getTime() : Date.now()) / 1000));
  const { sub, ch, exp, nbf } = payload;
  if (typeof sub !== 'string' || sub === '') throw new TokenError('bad-claims', 'token claim sub must be a non-empty string');
  if (!Array.isArray(ch) || !ch.every(isChannelName)) throw new TokenError('bad-claims', 'token claim ch must be an array of channel names');
  if (typeof exp !== 'number') throw new TokenError('bad-claims', 'token claim exp must be a number');
  // Frozen: every later request with this token shares the object.
  const claims: SubscriberClaims = Object.freeze({ sub, ch: Object.freeze(ch) as string[], exp });
  if (remember) cache.set(token!, claims, typeof nbf === 'number' ? nbf : undefined);
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
  const { SignJWT } = await import('jose');
  return new SignJWT({ ch: claims.ch })
    .setProtectedHeader(k.kid === null ? { alg: 'HS256', typ: 'JWT' } : { alg: 'HS256', typ: 'JWT', kid: k.kid })
    .setSubject(claims.sub)
    .setIssuedAt(iat)
    .setExpirationTime(iat + claims.ttlSeconds)
    .sign(verifierOf(k.secret).key);
}
