// Start-time checks of a loaded configuration: mistakes that would otherwise
// pass silently and show up later as every publish answered 401, or every
// browser falling back to polling. Each one is an error (ConfigError, exit 2)
// or a warning with what to do about it. Pure: no I/O, no logger.
import { ConfigError } from './config-error.js';

/**
 * RFC 6750 §2.1 b64token: what `Authorization: Bearer <key>` can carry. A key
 * with ':' '@' '!' or a space passes no strict client or proxy intact, so every
 * publish would be 401.
 */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

/** Below this, a secret is refused: guessable, whatever the algorithm. */
export const MIN_SECRET_LENGTH = 16;
/** RFC 7518 §3.2: an HS256 key should be at least as long as the hash (32 bytes); shorter ones get a warning. */
export const RECOMMENDED_SECRET_LENGTH = 32;

const GENERATE_HINT = 'generate one with: openssl rand -base64 32 | tr -d "=\\n" | tr "+/" "-_"';

/** The first character of `key` a Bearer header cannot carry, or null. */
export function badBearerChar(key: string): string | null {
  if (B64TOKEN.test(key)) return null;
  const eq = key.search(/=+$/);
  const body = eq < 0 ? key : key.slice(0, eq);
  for (const ch of body) if (!/[A-Za-z0-9\-._~+/]/.test(ch)) return ch;
  return '=';
}

/** Check one publisher key (`name` for the message: the variable it came from). Returns warnings. */
export function checkPublisherKey(key: string, name: string): string[] {
  const bad = badBearerChar(key);
  if (bad !== null) {
    const shown = bad === ' ' ? 'a space' : `"${bad}"`;
    throw new ConfigError(`${name} contains ${shown}, which an "Authorization: Bearer" header cannot carry (RFC 6750: letters, digits and - . _ ~ + / only, "=" at the end); every publish would be 401. Use another key; ${GENERATE_HINT}`);
  }
  return checkSecretLength(key, name);
}

/** Check one subscriber secret's strength. Returns warnings. */
export function checkSecretLength(secret: string, name: string): string[] {
  const n = Buffer.byteLength(secret);
  if (n < MIN_SECRET_LENGTH) {
    throw new ConfigError(`${name} is ${n} byte${n === 1 ? '' : 's'} long; at least ${MIN_SECRET_LENGTH} are needed (${RECOMMENDED_SECRET_LENGTH} recommended): ${GENERATE_HINT}`);
  }
  if (n < RECOMMENDED_SECRET_LENGTH) {
    return [`${name} is ${n} bytes long; ${RECOMMENDED_SECRET_LENGTH} or more are recommended for HS256 (RFC 7518 §3.2)`];
  }
  return [];
}

/**
 * An allowed origin as browsers send it in `Origin` (RFC 6454 §6.1): lower-case
 * scheme and host, no default port, no path. `https://Mail.Example.com/` was
 * compared as is by the WebSocket handshake and never matched, so every
 * browser fell back to polling.
 */
export function normalizeAllowedOrigin(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(`TIDINGS_ALLOWED_ORIGINS: "${raw}" is not an origin; write it as the browser sends it, e.g. https://mail.example.com`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigError(`TIDINGS_ALLOWED_ORIGINS: "${raw}" must start with http:// or https://`);
  }
  if (url.username || url.password || (url.pathname !== '/' && url.pathname !== '') || url.search || url.hash) {
    throw new ConfigError(`TIDINGS_ALLOWED_ORIGINS: "${raw}" has more than scheme://host[:port]; an Origin never carries a path, query or credentials (use ${url.origin})`);
  }
  return url.origin;
}

/** Normalise every allowed origin; a warning names each one that changed, so the operator can fix the setting. */
export function normalizeAllowedOrigins(list: readonly string[]): { origins: string[]; warnings: string[] } {
  const origins: string[] = [];
  const warnings: string[] = [];
  for (const raw of list) {
    const o = normalizeAllowedOrigin(raw);
    if (o !== raw) warnings.push(`TIDINGS_ALLOWED_ORIGINS: "${raw}" read as "${o}" (the form browsers send in Origin)`);
    if (!origins.includes(o)) origins.push(o);
  }
  return { origins, warnings };
}
