import type { Clock } from './types.js';

export interface Watchdog {
  /** (Re)start: expire unless armed again within `ms`. */
  arm(ms: number): void;
  /** Expire now if the deadline has passed by the wall clock (wake from sleep). */
  check(): void;
  stop(): void;
}

/**
 * A resettable deadline. It is kept in wall-clock time because a sleeping
 * laptop suspends timers: on wake the timer fires late (or `check()` runs
 * from a wake event) and the wall clock tells how long the silence was. But
 * the wall clock can also jump back (NTP, a user fixing the time): when the
 * timer fires and the deadline looks further away than the armed duration,
 * the timer, which did wait that long, is believed, and a re-arm for an
 * early-firing timer is capped at the armed duration.
 */
export function watchdog(clock: Clock, expire: () => void): Watchdog {
  let deadline = 0;
  let armed = 0;
  let timer: unknown;
  const stop = () => {
    clock.clearTimeout(timer);
    deadline = 0;
  };
  const check = (fired?: boolean) => {
    if (!deadline) return;
    const left = deadline - clock.now();
    if (left > 0 && !(fired && left > armed)) {
      clock.clearTimeout(timer);
      timer = clock.setTimeout(() => check(true), Math.min(left, armed));
    } else {
      stop();
      expire();
    }
  };
  return {
    arm(ms) {
      clock.clearTimeout(timer);
      armed = ms;
      deadline = clock.now() + ms;
      timer = clock.setTimeout(() => check(true), ms);
    },
    check: () => check(),
    stop,
  };
}
