import type { Clock } from './types.js';

export interface Watchdog {
  /** (Re)start: expire unless armed again within `ms`. */
  arm(ms: number): void;
  /** Expire now if the deadline has passed by the wall clock. */
  check(): void;
  stop(): void;
}

/**
 * A resettable deadline. The deadline is kept in wall-clock time and
 * `check()` compares against it because a sleeping laptop suspends timers:
 * on wake the timer fires late (or `check()` is called from a wake event)
 * and the wall clock tells how long the silence really was.
 */
export function watchdog(clock: Clock, expire: () => void): Watchdog {
  let deadline = 0;
  let timer: unknown;
  const stop = () => {
    clock.clearTimeout(timer);
    deadline = 0;
  };
  const check = () => {
    if (!deadline) return;
    const left = deadline - clock.now();
    if (left > 0) {
      // Timers may fire early (clamping, clock adjustments): re-arm, never give up.
      clock.clearTimeout(timer);
      timer = clock.setTimeout(check, left);
    } else {
      stop();
      expire();
    }
  };
  return {
    arm(ms) {
      clock.clearTimeout(timer);
      deadline = clock.now() + ms;
      timer = clock.setTimeout(check, ms);
    },
    check,
    stop,
  };
}
