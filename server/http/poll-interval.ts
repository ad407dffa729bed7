// The adaptive X-Poll-Interval (PROTOCOL.md: the server raises it under load).
//
// Rule: the base interval (config.pollIntervalS), doubled when held long-polls
// reach half of maxHeldPolls or the event loop lags 50 ms (p99), quadrupled at
// 80 % of maxHeldPolls or 200 ms of lag. Plain pollers are the cheapest load to
// shed: asking them to come back later costs their users only latency.

export interface Load {
  held: number;
  maxHeld: number;
  /** p99 event-loop delay over the last window, ms. */
  lagMs: number;
}

export const LAG_X2_MS = 50;
export const LAG_X4_MS = 200;

export function pollIntervalS(baseS: number, load: Load): number {
  const base = Math.max(1, baseS);
  if (load.held >= load.maxHeld * 0.8 || load.lagMs >= LAG_X4_MS) return base * 4;
  if (load.held >= load.maxHeld * 0.5 || load.lagMs >= LAG_X2_MS) return base * 2;
  return base;
}
