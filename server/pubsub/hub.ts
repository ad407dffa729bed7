// Channel -> subscribers on this node, and fan-out of live events.
//
// Each live event is serialized ONCE and framed ONCE (encodeText); the same
// Buffer is then written to every subscriber (uWebSockets' "store once,
// reference everywhere"). Large fan-outs run in slices of `slice` writes with
// setImmediate between them so handshakes, pings and HTTP are not starved.
// Jobs form one global FIFO, so per-channel order holds even when a second
// event arrives while the first one's fan-out is still slicing.
//
// Batching (`batch` > 1): events of one channel that queue up behind each
// other (a burst from Redis, or events arriving while a large fan-out is still
// slicing) are merged before their fan-out starts: their frames are
// concatenated ONCE and each subscriber gets one write holding all of them.
// A write costs about the same for one frame as for twenty (syscall, libuv
// request, stream bookkeeping), so under bursts the cost per delivery falls
// roughly by the batch size. The queue is drained on a microtask, so events
// emitted in one synchronous run (one Redis read) meet in the queue.
import { DrainRate, type Backlog } from './backlog.js';
import type { Bus, StoredEvent } from './bus.js';
import { encodeText } from '../ws/frame.js';

/**
 * The message JSON of an event, built by concatenation around the stored `json`
 * (never re-parsed). Channel names and cursors are validated on the way in
 * (CHANNEL_RE, CURSOR_RE) and contain nothing JSON would escape.
 */
export function eventMessage(e: StoredEvent): string {
  return '{"type":"event","channel":"' + e.channel + '","cursor":"' + e.cursor + '","data":' + e.json + '}';
}

/** PROTOCOL.md: `reset.cursor` is the channel's current head. */
export function resetMessage(channel: string, head: string): string {
  return '{"type":"reset","channel":"' + channel + '","cursor":"' + head + '"}';
}

/**
 * Hands one frame to one subscriber. `cursor` is null for a reset (always
 * delivered), else the event's cursor (a subscriber still replaying history
 * uses it to drop duplicates). Returns true when the frame was written.
 *
 * For a merged batch, `frame` is every frame of the batch concatenated (one
 * write), `cursor` the last one's, and `parts` lists them one by one as
 * [cursor, frame, cursor, frame, ...] for a subscriber that must look at each
 * (still replaying history). `parts` is null for a single event.
 */
export type Deliver<S> = (sub: S, channel: string, cursor: string | null, frame: Buffer, parts: Parts | null) => boolean;
/** A merged batch, event by event: [cursor | null, frame, cursor | null, frame, ...]. */
export type Parts = (string | Buffer | null)[];

export interface HubOptions {
  /** Writes per fan-out slice before yielding (config.fanoutSlice). @default 2000 */
  slice?: number;
  /**
   * Time per fan-out slice before yielding, in ms (config.fanoutSliceMs). The
   * write count alone lets a slice run ~20 ms on a slow core (measured: 9 µs a
   * delivery at 15,000 subscribers), which is what a publish or handshake
   * waiting behind it pays; the clock bounds that whatever the machine.
   * @default 4
   */
  sliceMs?: number;
  /** Clock for the time budget (tests). @default performance.now */
  now?: () => number;
  /** Called once per slice with what was written (metrics), not once per write. */
  onWritten?: (messages: number, bytes: number) => void;
  /**
   * Most queued events of one channel merged into one write per subscriber
   * (config.fanoutBatch). 1 = no merging, and the first slice runs inline.
   * @default 1
   */
  batch?: number;
}

interface Job<S> {
  channel: string;
  cursor: string | null;
  frame: Buffer;
  /** A single subscriber, or the iterator over a channel's set (live: sees removals). */
  one: S | null;
  iter: Iterator<S> | null;
  /** What the job targets (the bare subscriber or the Set): jobs merge only when it is the same. */
  target: S | Set<S>;
  /** The fan-out has begun: some subscribers have this frame, so nothing may be merged into it. */
  started: boolean;
  /** Events in this job (> 1 once merged). */
  events: number;
  /** Set once merged: each event's cursor and frame. */
  parts: Parts | null;
  /** Hub clock when queued (delivery lag). */
  at: number;
  /** This event's frame bytes as queued (the backlog's byte count; unchanged by a merge). */
  bytes: number;
  /** Writes still to do, estimated at enqueue (the subscriber count; a merge or a leaving subscriber makes it an overestimate). */
  writes: number;
}

/** Writes between two looks at the clock in a slice: cheap enough, and fine-grained enough (~1 ms). */
const CLOCK_EVERY = 64;

export class Hub<S extends object> {
  /** Most channels have one subscriber (`user:42`): store it bare, a Set only from the second. */
  private readonly subs = new Map<string, S | Set<S>>();
  private readonly jobs: Job<S>[] = [];
  private jobHead = 0;
  private running = false;
  private readonly slice: number;
  private readonly sliceMs: number;
  private readonly now: () => number;
  private readonly onWritten: ((messages: number, bytes: number) => void) | undefined;
  private readonly batch: number;
  private scheduled = false;
  /** Frame bytes of the unfinished jobs (backlog()). */
  private queuedBytes = 0;
  /** Sum of `writes` over the unfinished jobs, and the rate they are being done at (backlog().lagMs). */
  private queuedWrites = 0;
  private readonly rate = new DrainRate();
  /** Length of the run of mergeable jobs at the queue's tail (write estimates under batching). */
  private tailChain = 0;
  /** Jobs ever queued / ever finished, and who waits for a count of finished ones (flushed()). */
  private queuedTotal = 0;
  private doneTotal = 0;
  private flushWaiters: { until: number; resolve: () => void }[] = [];
  private readonly runSoon = (): void => { this.scheduled = false; this.run(); };

  constructor(private readonly bus: Pick<Bus, 'watch' | 'unwatch'>, private readonly deliver: Deliver<S>, opts: HubOptions = {}) {
    this.slice = Math.max(1, opts.slice ?? 2000);
    this.sliceMs = opts.sliceMs ?? 4;
    this.now = opts.now ?? (() => performance.now());
    this.onWritten = opts.onWritten;
    this.batch = Math.max(1, opts.batch ?? 1);
  }

  subscribe(channel: string, sub: S): void {
    const cur = this.subs.get(channel);
    if (cur === undefined) {
      this.subs.set(channel, sub);
      // Node-level interest: first local subscriber of the channel.
      this.bus.watch(channel);
    } else if (cur instanceof Set) {
      cur.add(sub);
    } else if (cur !== sub) {
      this.subs.set(channel, new Set([cur, sub]));
    }
  }

  unsubscribe(channel: string, sub: S): void {
    const cur = this.subs.get(channel);
    if (cur === undefined) return;
    if (cur instanceof Set) {
      cur.delete(sub);
      if (cur.size === 1) {
        // Back to the bare form. A job still iterating the old Set is unaffected:
        // the remaining subscriber is in it too, and a later subscriber reads
        // history that already contains the in-flight event.
        this.subs.set(channel, cur.values().next().value as S);
      } else if (cur.size === 0) {
        this.subs.delete(channel);
        this.bus.unwatch(channel);
      }
    } else if (cur === sub) {
      this.subs.delete(channel);
      this.bus.unwatch(channel);
    }
  }

  /** Local subscribers of a channel. */
  count(channel: string): number {
    const cur = this.subs.get(channel);
    return cur === undefined ? 0 : cur instanceof Set ? cur.size : 1;
  }

  /** Channels with at least one local subscriber. */
  get channels(): number {
    return this.subs.size;
  }

  /** Fan-out jobs not finished yet (tests, drain). */
  get pending(): number {
    return this.jobs.length - this.jobHead;
  }

  /** What the fan-out queue holds and how far behind it is (publish admission, /readyz, metrics). */
  backlog(): Backlog {
    const jobs = this.jobs.length - this.jobHead;
    if (jobs === 0) return { jobs: 0, bytes: 0, lagMs: 0 };
    const now = this.now();
    const waited = Math.max(0, now - this.jobs[this.jobHead]!.at);
    return { jobs, bytes: this.queuedBytes, lagMs: Math.max(waited, this.rate.projectedMs(this.queuedWrites)) };
  }

  /**
   * Null when the queue is empty; else a promise resolved once every job queued
   * until now has been written to all its subscribers. A subscriber that is
   * about to go live waits for it: an event it replayed may still be queued
   * here for it, and must reach it while it can still drop the duplicate.
   */
  flushed(): Promise<void> | null {
    if (this.jobHead === this.jobs.length) return null;
    const until = this.queuedTotal;
    return new Promise((resolve) => this.flushWaiters.push({ until, resolve }));
  }

  private wakeFlushed(): void {
    const done = this.doneTotal;
    const still: { until: number; resolve: () => void }[] = [];
    for (const w of this.flushWaiters) (done >= w.until ? w.resolve() : still.push(w));
    this.flushWaiters = still;
  }

  /** The bus's live-event listener. */
  onEvent(event: StoredEvent): void {
    if (!this.subs.has(event.channel)) return;
    this.enqueue(event.channel, event.cursor, encodeText(eventMessage(event)));
  }

  /** The bus's gap listener: events were lost, every subscriber of the channel gets a reset. */
  onGap(channel: string, head: string): void {
    if (!this.subs.has(channel)) return;
    this.enqueue(channel, null, encodeText(resetMessage(channel, head)));
  }

  private enqueue(channel: string, cursor: string | null, frame: Buffer): void {
    const cur = this.subs.get(channel)!;
    const at = this.now();
    const bytes = frame.length;
    // A job that will be merged into the unstarted one before it (same channel and
    // subscribers, within `batch`) adds no writes of its own.
    const prev = this.jobs.length > this.jobHead ? this.jobs[this.jobs.length - 1]! : null;
    const rides = this.batch > 1 && prev !== null && !prev.started && prev.target === cur && prev.channel === channel && this.tailChain % this.batch !== 0;
    this.tailChain = rides || (prev !== null && !prev.started && prev.target === cur && prev.channel === channel) ? this.tailChain + 1 : 1;
    const writes = rides ? 0 : cur instanceof Set ? cur.size : 1;
    const job: Job<S> = cur instanceof Set
      ? { channel, cursor, frame, one: null, iter: cur.values(), target: cur, started: false, events: 1, parts: null, at, bytes, writes }
      : { channel, cursor, frame, one: cur, iter: null, target: cur, started: false, events: 1, parts: null, at, bytes, writes };
    this.queuedWrites += writes;
    this.rate.busy(at);
    this.jobs.push(job);
    this.queuedBytes += bytes;
    this.queuedTotal++;
    if (this.running || this.scheduled) return;
    if (this.batch === 1) {
      // The first slice runs inline (lowest latency); only what is left waits for setImmediate.
      this.run();
    } else {
      // Still before any I/O, but after the events emitted in this synchronous run have queued.
      this.scheduled = true;
      queueMicrotask(this.runSoon);
    }
  }

  /**
   * Before job `at` starts: fold the unstarted jobs right behind it that go to
   * the same subscribers into it (up to `batch` events). Their frames become one
   * Buffer, built once and written to every subscriber.
   */
  private merge(at: number): void {
    const job = this.jobs[at]!;
    let end = at + 1;
    let events = 1;
    while (end < this.jobs.length && events < this.batch) {
      const next = this.jobs[end]!;
      if (next.started || next.target !== job.target || next.channel !== job.channel) break;
      events++;
      end++;
    }
    if (events === 1) return;
    const parts: Parts = [job.cursor, job.frame];
    const frames: Buffer[] = [job.frame];
    for (let i = at + 1; i < end; i++) {
      const next = this.jobs[i]!;
      parts.push(next.cursor, next.frame);
      frames.push(next.frame);
      // Emptied in place: the loop steps over it like a finished job.
      next.one = null;
      next.iter = null;
      next.started = true;
    }
    job.frame = Buffer.concat(frames);
    job.cursor = parts[parts.length - 2] as string | null;
    job.parts = parts;
    job.events = events;
  }

  private run(): void {
    this.running = true;
    let budget = this.slice;
    // The clock is read once per CLOCK_EVERY writes, not per write.
    const deadline = this.now() + this.sliceMs;
    let untilClock = CLOCK_EVERY;
    let written = 0;
    let messages = 0;
    let bytes = 0;
    while (budget > 0 && this.jobHead < this.jobs.length) {
      const job = this.jobs[this.jobHead]!;
      if (!job.started) {
        job.started = true;
        if (this.batch > 1) this.merge(this.jobHead);
      }
      if (job.one !== null) {
        budget--;
        written++;
        job.writes--;
        this.queuedWrites--;
        if (this.deliver(job.one, job.channel, job.cursor, job.frame, job.parts)) { messages += job.events; bytes += job.frame.length; }
        job.one = null;
        if (--untilClock === 0) {
          untilClock = CLOCK_EVERY;
          if (this.now() >= deadline) budget = 0;
        }
      } else if (job.iter !== null) {
        for (;;) {
          if (budget === 0) break;
          const n = job.iter.next();
          if (n.done) { job.iter = null; break; }
          budget--;
          written++;
          job.writes--;
          this.queuedWrites--;
          if (this.deliver(n.value, job.channel, job.cursor, job.frame, job.parts)) { messages += job.events; bytes += job.frame.length; }
          if (--untilClock === 0) {
            untilClock = CLOCK_EVERY;
            if (this.now() >= deadline) budget = 0;
          }
        }
        if (job.iter !== null) break;
      }
      this.queuedBytes -= job.bytes;
      this.queuedWrites -= job.writes;
      job.writes = 0;
      this.jobHead++;
      this.doneTotal++;
    }
    if (this.flushWaiters.length > 0) this.wakeFlushed();
    this.rate.add(this.now(), written);
    if (this.jobHead === this.jobs.length) {
      this.rate.idle();
      this.jobs.length = 0;
      this.jobHead = 0;
      this.queuedBytes = 0;
      this.queuedWrites = 0;
      this.running = false;
    } else {
      if (this.jobHead > 1024) { this.jobs.splice(0, this.jobHead); this.jobHead = 0; }
      setImmediate(this.runSoon);
    }
    if (messages > 0 && this.onWritten) this.onWritten(messages, bytes);
  }
}
