// CONTRACT: one shared timer wheel for every connection's ping, pong deadline
// and hello deadline, instead of a timer per connection.

/** Items carry their own due time; the wheel never allocates per schedule beyond a slot array push. */
export interface WheelItem {
  /** Absolute due time (ms, the wheel's clock) or 0 when not scheduled / cancelled. */
  due: number;
}

export declare class TimerWheel<T extends WheelItem> {
  /**
   * @param tickMs resolution; deadlines fire up to one tick late, never early.
   * @param onDue called once per item whose `due` has passed (if `item.due` changed
   *        to a later time since it was scheduled, the wheel re-files it instead).
   * @param now injectable clock (default Date.now / performance.now) for tests.
   */
  constructor(tickMs: number, onDue: (item: T, now: number) => void, now?: () => number);
  /** Set item.due = at and file it. Rescheduling later is cheap: just assign item.due (lazy). */
  schedule(item: T, at: number): void;
  /** Cancel: sets item.due = 0; the slot entry is dropped lazily. */
  cancel(item: T): void;
  /** Advance to `now` and fire everything due (tests call this with a fake clock). */
  advance(now: number): void;
  /** Start/stop the single underlying setInterval (unref'd). */
  start(): void;
  stop(): void;
  readonly size: number;
}
