// Pure validation of the demo routes' query parameters. Each failure has a
// stable code from one table (STYLE.md §5) and becomes a 4xx JSON body.

export const DEMO_ERRORS = {
  bad_user: 400,
  bad_ttl: 400,
  bad_subject: 400,
  bad_action: 400,
  bad_channels: 400,
  bad_code: 400,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  not_built: 404,
  publish_failed: 503,
  token_failed: 500,
} as const;
export type DemoErrorCode = keyof typeof DEMO_ERRORS;

export class DemoError extends Error {
  readonly status: number;
  constructor(readonly code: DemoErrorCode, message: string) {
    super(message);
    this.name = 'DemoError';
    this.status = DEMO_ERRORS[code];
  }
}

export const DEMO_LIMITS = {
  /** A demo user id: also the tail of the channel name `demo:<user>` (channel names allow 128). */
  userPattern: /^[A-Za-z0-9_-]{1,32}$/,
  /** Token lifetime bounds, seconds. Short ones let e2e tests watch a token expire. */
  minTtlS: 1,
  maxTtlS: 86_400,
  defaultTtlS: 3_600,
  /** Longest subject accepted by /demo/send (the data stays far below the 64 KiB publish limit). */
  maxSubject: 200,
} as const;

export const SIMULATE_ACTIONS = ['drop', 'block-ws', 'unblock-ws', 'freeze', 'unfreeze'] as const;
export type SimulateAction = (typeof SIMULATE_ACTIONS)[number];

export function parseUser(q: URLSearchParams): string {
  const user = q.get('user');
  if (user === null || !DEMO_LIMITS.userPattern.test(user)) {
    throw new DemoError('bad_user', 'user must be 1 to 32 characters of A-Z a-z 0-9 _ -');
  }
  return user;
}

export function channelOf(user: string): string {
  return `demo:${user}`;
}

/**
 * The channels a demo token grants: `channels=a,b` (the SDK's token function
 * passes the channels it wants, the union of a tab group's when sharing), each
 * the user's own channel `demo:<user>` or below it (`demo:<user>:<name>`, the
 * name in PROTOCOL.md's channel alphabet), or the public `demo:news`. Default:
 * the user's own channel. At most `max`: the server's channels per hello
 * (TIDINGS_MAX_CHANNELS), so a tab group's union token is refused only where
 * its hello would be. (A smaller cap of its own, 8, left a group of tabs
 * whose channels added up to more stuck connecting: its leader never got a
 * token.)
 */
export function parseChannels(q: URLSearchParams, user: string, max: number): string[] {
  const raw = q.get('channels');
  const own = channelOf(user);
  if (raw === null || raw === '') return [own];
  const list = [...new Set(raw.split(','))];
  const ok = (c: string) => c === own || c === 'demo:news' || (c.startsWith(own + ':') && /^[A-Za-z0-9:_.-]{1,128}$/.test(c));
  if (list.length > max || !list.every(ok)) {
    throw new DemoError('bad_channels', `channels must be at most ${max} of ${own}, ${own}:<name> or demo:news, comma-separated`);
  }
  return list;
}

export function parseTtl(q: URLSearchParams): number {
  const raw = q.get('ttl');
  if (raw === null) return DEMO_LIMITS.defaultTtlS;
  const n = /^\d{1,6}$/.test(raw) ? Number(raw) : NaN;
  if (!(n >= DEMO_LIMITS.minTtlS && n <= DEMO_LIMITS.maxTtlS)) {
    throw new DemoError('bad_ttl', `ttl must be an integer from ${DEMO_LIMITS.minTtlS} to ${DEMO_LIMITS.maxTtlS} seconds`);
  }
  return n;
}

export function parseSubject(q: URLSearchParams, fallback: string): string {
  const raw = q.get('subject');
  if (raw === null || raw === '') return fallback;
  if (raw.length > DEMO_LIMITS.maxSubject) {
    throw new DemoError('bad_subject', `subject must be at most ${DEMO_LIMITS.maxSubject} characters`);
  }
  return raw;
}

export function parseAction(q: URLSearchParams): SimulateAction {
  const raw = q.get('action');
  const found = SIMULATE_ACTIONS.find((a) => a === raw);
  if (!found) throw new DemoError('bad_action', `action must be one of ${SIMULATE_ACTIONS.join(', ')}`);
  return found;
}

/**
 * Close code for `drop`: 1011 by default (PROTOCOL.md: reconnect with backoff),
 * 0 for an abrupt TCP reset, or any code a server may send (RFC 6455 §7.4:
 * 1000-1014 minus the reserved 1004-1006, and 3000-4999).
 */
export function parseDropCode(q: URLSearchParams): number {
  const raw = q.get('code');
  if (raw === null) return 1011;
  const n = /^\d{1,4}$/.test(raw) ? Number(raw) : NaN;
  const ok = n === 0 || (n >= 1000 && n <= 1014 && n !== 1004 && n !== 1005 && n !== 1006) || (n >= 3000 && n <= 4999);
  if (!ok) throw new DemoError('bad_code', 'code must be 0 (abrupt) or a close code a server may send (1000-1014 except 1004-1006, 3000-4999)');
  return n;
}
