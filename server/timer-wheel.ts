// One shared timer wheel for every connection's ping, pong deadline and hello
// deadline, instead of a timer per connection: 100k connections cost one
// setInterval and 100k slot entries, not 100k libuv timers re-armed on every message.
//
// A ring of `slots` arrays; a deadline `due` is filed in the slot of tick
// ceil(due / tickMs), so it is looked at only once that tick has passed (never early).
// Entries are lazy: moving `due` later costs nothing (the entry is re-filed when its
// slot comes up), cancelling is `due = 0` (dropped when its slot comes up). Each filing
// gets a sequence number stored in the item, so an entry left behind by a move to an
// *earlier* tick is recognised as stale and dropped: an item fires at most once per
// schedule, never twice.

/** Items carry their own due time; the wheel never allocates per schedule beyond a slot array push. */
export interface WheelItem {
  /** Absolute due time (ms, the wheel's clock) or 0 when not scheduled / cancelled. */
  due: number;
  /** Owned by the wheel: the sequence number of the item's live slot entry, 0 when none.
   *  Declare it as 0 in the item's object literal to keep one hidden class. */
  wheelSeq?: number;
}

/** Slots in the ring: 1024 x 100 ms covers 102 s, beyond every default deadline. */
export const DEFAULT_WHEEL_SLOTS = 1024;

export class TimerWheel<T extends WheelItem> {
  /** The wheel's clock; schedule with `wheel.now() + ms`. */
  readonly now: () => number;
  private readonly tickMs: number;
  private readonly onDue: (item: T, now: number) => void;
  private readonly nslots: number;
  private items: T[][];
  private seqs: number[][];
  private spareItems: T[] = [];
  private spareSeqs: number[] = [];
  /** Last tick whose slot has been processed. */
  private tick: number;
  private seq = 0;
  private filed = 0;
  private timer: ReturnType<typeof setInterval> | null = null;

  /**
   * @param tickMs resolution; deadlines fire up to one tick late, never early.
   * @param onDue called once per item whose `due` has passed (if `item.due` changed
   *        to a later time since it was scheduled, the wheel re-files it instead).
   *        `item.due` still holds the deadline when it runs (onDue may check it); the
   *        item is no longer filed, so onDue may schedule it again. If it does not,
   *        the wheel sets `due` to 0 afterwards.
   * @param now injectable clock (default Date.now) for tests.
   * @param slots ring size (default DEFAULT_WHEEL_SLOTS); later deadlines go round again.
   */
  constructor(tickMs: number, onDue: (item: T, now: number) => void, now: () => number = Date.now, slots = DEFAULT_WHEEL_SLOTS) {
    if (!(tickMs > 0) || !Number.isFinite(tickMs)) throw new RangeError(`tickMs must be a positive number, got ${tickMs}`);
    if (!Number.isInteger(slots) || slots < 1) throw new RangeError(`slots must be a positive integer, got ${slots}`);
    this.tickMs = tickMs;
    this.onDue = onDue;
    this.now = now;
    this.nslots = slots;
    this.items = Array.from({ length: slots }, () => []);
    this.seqs = Array.from({ length: slots }, () => []);
    this.tick = Math.floor(now() / tickMs);
  }

  /** Items filed (a cancelled item counts until its slot comes up). */
  get size(): number {
    return this.filed;
  }

  /** Set item.due = at and file it. Rescheduling later is cheap: just assign item.due (lazy). */
  schedule(item: T, at: number): void {
    if (!Number.isFinite(at)) throw new RangeError(`due time must be a finite number, got ${at}`);
    // due 0 means "not scheduled": a deadline at or before time 0 (a fake clock at 0
    // plus a zero timeout) becomes 1 ms, i.e. the next tick.
    if (at < 1) at = 1;
    const old = item.due;
    item.due = at;
    const live = item.wheelSeq !== undefined && item.wheelSeq !== 0;
    // A live entry at or before the new time will re-file the item itself (lazy).
    if (live && old !== 0 && this.tickOf(old) <= this.tickOf(at)) return;
    if (!live) this.filed++;
    this.file(item, this.tickOf(at));
  }

  /** Cancel: sets item.due = 0; the slot entry is dropped lazily. */
  cancel(item: T): void {
    item.due = 0;
  }

  /** Advance to `now` and fire everything due (tests call this with a fake clock). */
  advance(now: number): void {
    const target = Math.floor(now / this.tickMs);
    if (target <= this.tick) return;
    let firstError: unknown = null;
    // After a long stall (suspended laptop, blocked loop) visit each slot once, not
    // once per missed tick: everything due fires, the rest is re-filed.
    const from = target - this.tick > this.nslots ? target - this.nslots : this.tick;
    for (let t = from + 1; t <= target; t++) {
      this.tick = t;
      const err = this.runSlot(t % this.nslots, now);
      if (err !== null && firstError === null) firstError = err;
    }
    // A throwing onDue must not leave the wheel half-processed or skip other items:
    // finish the pass, then surface the first error.
    if (firstError !== null) throw firstError;
  }

  /** Start the single underlying setInterval (unref'd: the wheel never keeps the process alive). */
  start(): void {
    if (this.timer !== null) return;
    this.timer = setInterval(() => this.advance(this.now()), this.tickMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer === null) return;
    clearInterval(this.timer);
    this.timer = null;
  }

  private tickOf(at: number): number {
    // Never file into a tick already processed: it would wait a whole revolution.
    return Math.max(Math.ceil(at / this.tickMs), this.tick + 1);
  }

  private file(item: T, tick: number): void {
    const s = tick % this.nslots;
    const seq = ++this.seq;
    item.wheelSeq = seq;
    this.items[s]!.push(item);
    this.seqs[s]!.push(seq);
  }

  private runSlot(s: number, now: number): unknown {
    const items = this.items[s]!;
    const seqs = this.seqs[s]!;
    if (items.length === 0) return null;
    // Swap in the spare arrays: items re-filed (or scheduled by onDue) into this same
    // slot land in the fresh array and are not seen twice in this pass.
    this.items[s] = this.spareItems;
    this.seqs[s] = this.spareSeqs;
    let error: unknown = null;
    for (let i = 0; i < items.length; i++) {
      const item = items[i]!;
      if (item.wheelSeq !== seqs[i]) continue; // stale: the item was moved earlier
      const due = item.due;
      if (due === 0) {
        item.wheelSeq = 0;
        this.filed--;
      } else if (due > now) {
        this.file(item, this.tickOf(due)); // moved later, or more than a revolution away
      } else {
        item.wheelSeq = 0;
        this.filed--;
        try {
          this.onDue(item, now);
        } catch (err) {
          if (error === null) error = err;
        }
        // Not re-scheduled by onDue: back to "not scheduled" (due 0), so a later lazy
        // `item.due = t` cannot be mistaken for a live deadline.
        if (item.wheelSeq === 0 && item.due === due) item.due = 0;
      }
    }
    items.length = 0;
    seqs.length = 0;
    this.spareItems = items;
    this.spareSeqs = seqs;
    return error;
  }
}
