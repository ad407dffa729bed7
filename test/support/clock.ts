/**
 * A manual fake clock: time moves only when a test calls `advance()`.
 * Implements the SDK's `Clock` (now/setTimeout/clearTimeout) and is plain
 * enough for any module that takes injected timers.
 */
export interface ManualClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
  /** Move time forward by ms, running due timers in order (each sees `now()` = its due time). */
  advance(ms: number): void;
  /** Jump the wall clock without running timers (a laptop waking from sleep before its timers fire). */
  jump(ms: number): void;
  /** Delays (from now) of pending timers, soonest first. */
  pending(): number[];
}

export function manualClock(start = 1_700_000_000_000): ManualClock {
  let now = start;
  let seq = 0;
  const timers = new Map<number, { at: number; fn: () => void; seq: number }>();
  return {
    now: () => now,
    setTimeout(fn, ms) {
      const id = ++seq;
      timers.set(id, { at: now + Math.max(0, ms), fn, seq: id });
      return id;
    },
    clearTimeout(id) {
      timers.delete(id as number);
    },
    advance(ms) {
      const end = now + ms;
      for (;;) {
        let next: [number, { at: number; fn: () => void; seq: number }] | undefined;
        for (const e of timers) if (e[1].at <= end && (!next || e[1].at < next[1].at || (e[1].at === next[1].at && e[1].seq < next[1].seq))) next = e;
        if (!next) break;
        timers.delete(next[0]);
        now = Math.max(now, next[1].at);
        next[1].fn();
      }
      now = end;
    },
    jump(ms) {
      now += ms;
    },
    pending: () => [...timers.values()].map((t) => t.at - now).sort((a, b) => a - b),
  };
}

/** Seeded PRNG (mulberry32) for reproducible jitter in tests. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Lets pending promise callbacks, msw's interception and RWS's zero-delay
 * setTimeout run. Real time spent: a few zero-delay macrotasks, bounded.
 */
export async function flush(rounds = 8): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setTimeout(r, 0));
}
