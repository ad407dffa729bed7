// Log lines an operator can read at `info` without drowning: refused handshakes
// and authentication failures are sampled (one line per kind per interval,
// with how many were left out), and never carry a token, only the `sub` it
// claims. The client address honours TIDINGS_TRUST_PROXY.
import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import { RateLimitedLog } from './admission.js';
import type { Config } from './config.js';

/** At most one line per kind per this many ms; the next line says how many were suppressed. */
export const SAMPLE_EVERY_MS = 10_000;

export type SampledKind = 'handshake_refused' | 'auth_failed';

const samplers = new WeakMap<Logger, Map<SampledKind, RateLimitedLog>>();

/** Log `msg` at info, at most once per SAMPLE_EVERY_MS per logger and kind. */
export function sampled(log: Logger, kind: SampledKind, fields: Record<string, unknown>, msg: string, now: () => number = Date.now): void {
  let byKind = samplers.get(log);
  if (byKind === undefined) samplers.set(log, (byKind = new Map()));
  let s = byKind.get(kind);
  if (s === undefined) byKind.set(kind, (s = new RateLimitedLog(SAMPLE_EVERY_MS, now)));
  const suppressed = s.tick();
  if (suppressed < 0) return;
  log.info({ kind, ...fields, suppressed }, msg);
}

/**
 * The `sub` a token claims, read without verifying it (for a log line about a
 * token that failed verification: who it says it is, never the token itself).
 * Undefined when the token is not a readable JWT.
 */
export function claimedSub(token: string | null | undefined): string | undefined {
  if (typeof token !== 'string' || token.length > 16 * 1024) return undefined;
  const parts = token.split('.');
  if (parts.length !== 3) return undefined;
  try {
    const sub = (JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as { sub?: unknown }).sub;
    return typeof sub === 'string' ? sub.slice(0, 128) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The client's address: the socket's peer, or with TIDINGS_TRUST_PROXY the
 * last X-Forwarded-For entry (the address our proxy saw; entries before it
 * are whatever the client wrote, and forgeable).
 */
export function clientAddress(req: Pick<IncomingMessage, 'headers' | 'socket'>, config: Pick<Config, 'trustProxy'>): string | undefined {
  if (config.trustProxy) {
    const xff = req.headers['x-forwarded-for'];
    const value = Array.isArray(xff) ? xff[xff.length - 1] : xff;
    if (value) {
      const last = value.slice(value.lastIndexOf(',') + 1).trim();
      if (last !== '') return last;
    }
  }
  return req.socket.remoteAddress;
}
