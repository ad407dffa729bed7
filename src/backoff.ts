/**
 * Retry timing as pure functions of (attempt, random source): no clock, no
 * Math.random inline, so tests pin them with a seeded generator.
 */

type Random = () => number;

/** Exponents above this would only overflow to Infinity before `min(cap, …)`. */
const MAX_EXP = 30;

/**
 * "Full jitter" (AWS Architecture Blog, "Exponential Backoff And Jitter",
 * 2015): a delay uniform in [0, min(cap, base * 2^n)). Spreads a crowd of
 * clients reconnecting after the same outage, unlike RWS's own
 * `min * factor^n` whose only randomness is picked once at module load.
 */
export const backoff = (n: number, base: number, cap: number, random: Random): number =>
  random() * Math.min(cap, base * 2 ** Math.min(n, MAX_EXP));

/**
 * Upper bound for a 1012 window: a server bug sending "1e12" must not park
 * clients for years. 5 minutes is the longest drain we expect.
 */
export const MAX_RESTART_WINDOW = 300_000;

/**
 * 1012 Service Restart (RFC 6455 §7.4.1, IANA registry): PROTOCOL.md puts the
 * drain window in ms in the close reason. Returns a delay uniform in
 * [0, window], or undefined when the reason is not a decimal number (the
 * caller then backs off normally).
 */
export function restartDelay(reason: string, random: Random): number | undefined {
  if (!/^\d{1,15}$/.test(reason)) return undefined;
  return random() * Math.min(+reason, MAX_RESTART_WINDOW);
}

/**
 * Delay before WebSocket probe i while polling: d = min(max, first * 2^i),
 * uniform in [d/2, d] so a crowd that fell back together does not probe
 * together, yet no probe comes later than the nominal schedule.
 */
export function probeDelay(i: number, first: number, max: number, random: Random): number {
  const d = Math.min(max, first * 2 ** Math.min(i, MAX_EXP));
  return d / 2 + (random() * d) / 2;
}

/** Least wait honoured from a Retry-After (a proxy's `Retry-After: 0` must not make a tight loop). */
export const MIN_RETRY_AFTER = 1000;

/**
 * Wait after a 429/503 with Retry-After `ms`: at least MIN_RETRY_AFTER, and
 * uniform in [d, 1.5 d] so clients refused together do not come back
 * together (Retry-After is a minimum, RFC 9110 §10.2.3: later is compliant).
 */
export const retryAfter = (ms: number, random: Random): number => Math.max(MIN_RETRY_AFTER, ms) * (1 + random() / 2);
