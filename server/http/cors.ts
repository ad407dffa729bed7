// CORS (Fetch standard, "CORS protocol") for /v1/poll and /v1/publish.
// Credentials are bearer tokens in Authorization, never cookies, so we never send
// Access-Control-Allow-Credentials; Authorization must still be listed by name
// because "*" in Allow-Headers does not cover it.

export const ALLOW_HEADERS = 'Authorization, Content-Type, Prefer, If-None-Match';
export const EXPOSE_HEADERS = 'ETag, X-Poll-Interval, Retry-After, Preference-Applied';
export const ALLOW_METHODS = 'GET, POST, OPTIONS';
/** How long a browser may cache a preflight answer, in seconds. */
export const PREFLIGHT_MAX_AGE_S = 600;

/** Origins compare as browsers serialize them: lower case, no trailing slash. */
export function normalizeOrigin(o: string): string {
  return o.trim().toLowerCase().replace(/\/+$/, '');
}

export type CorsDecision =
  /** No Origin header: not a cross-origin browser request (curl, a backend). */
  | { kind: 'none'; headers: Readonly<Record<string, string>> }
  | { kind: 'allowed'; headers: Readonly<Record<string, string>> }
  | { kind: 'forbidden'; headers: Readonly<Record<string, string>> };

/** Vary alone: what a request without Origin, or a refused one, gets. Shared and frozen. */
export const NO_ORIGIN_HEADERS: Readonly<Record<string, string>> = Object.freeze({ Vary: 'Origin' });
// Requests without Origin (most pollers: curl, backends, same-origin pages) and refused
// ones get a shared decision instead of two new objects each.
const NONE: CorsDecision = Object.freeze({ kind: 'none', headers: NO_ORIGIN_HEADERS });
const FORBIDDEN: CorsDecision = Object.freeze({ kind: 'forbidden', headers: NO_ORIGIN_HEADERS });

/**
 * Headers for an actual (non-preflight) response. An empty allow-list reflects
 * any Origin. Vary: Origin always, since the answer depends on it (and caches
 * must not serve one origin's answer to another). The headers object may be
 * shared between requests: copy it before changing it.
 */
export function corsFor(origin: string | undefined, allowed: readonly string[]): CorsDecision {
  if (origin === undefined) return NONE;
  const ok = allowed.length === 0 || allowed.some((a) => normalizeOrigin(a) === normalizeOrigin(origin));
  if (!ok) return FORBIDDEN;
  return {
    kind: 'allowed',
    headers: { 'Access-Control-Allow-Origin': origin, 'Access-Control-Expose-Headers': EXPOSE_HEADERS, Vary: 'Origin' },
  };
}

/** Headers for a preflight (OPTIONS with Access-Control-Request-Method) from an allowed origin. */
export function preflightHeaders(origin: string): Record<string, string> {
  return {
    'Access-Control-Allow-Origin': origin,
    'Access-Control-Allow-Methods': ALLOW_METHODS,
    'Access-Control-Allow-Headers': ALLOW_HEADERS,
    'Access-Control-Max-Age': String(PREFLIGHT_MAX_AGE_S),
    Vary: 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers',
  };
}
