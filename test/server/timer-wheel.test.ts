import { afterEach, describe, expect, it, vi } from 'vitest';
import fc from 'fast-check';
import { TimerWheel, type WheelItem } from '../../server/timer-wheel.js';

interface Item extends WheelItem { id: number }
const item = (id = 0): Item => ({ due: 0, wheelSeq: 0, id });

/** A wheel on a fake clock starting at t0, recording [id, now] per firing. */
function fakeWheel(tickMs = 100, slots?: number, t0 = 1000) {
  let clock = t0;
  const fired: [number, number][] = [];
  const wheel = new TimerWheel<Item>(tickMs, (it, now) => { fired.push([it.id, now]); }, () => clock, slots);
  const to = (t: number) => { clock = t; wheel.advance(t); };
  return { wheel, fired, to };
}

describe('TimerWheel', () => {
  it('never fires early: not 1 ms before the deadline, at most one tick after it', () => {
    const { wheel, fired, to } = fakeWheel(100);
    wheel.schedule(item(1), 1250);
    to(1249);
    expect(fired).toEqual([]);
    to(1299); // due, but its tick (1300) has not come: late by less than a tick is allowed
    expect(fired).toEqual([]);
    to(1300);
    expect(fired).toEqual([[1, 1300]]);
  });
  it('fires exactly at a deadline on a tick boundary', () => {
    const { wheel, fired, to } = fakeWheel(100);
    wheel.schedule(item(1), 1300);
    to(1299);
    expect(fired).toEqual([]);
    to(1300);
    expect(fired).toEqual([[1, 1300]]);
  });
  it('shows onDue the deadline that passed, then marks the item unscheduled (due 0)', () => {
    const a = item(1);
    const seen: number[] = [];
    const wheel = new TimerWheel<Item>(10, (it) => { seen.push(it.due); }, () => 0);
    wheel.schedule(a, 50);
    wheel.advance(50);
    wheel.advance(5000);
    expect(seen).toEqual([50]);
    expect(a.due).toBe(0);
    expect(wheel.size).toBe(0);
  });
  it('lets onDue inspect and zero due itself, then schedule again', () => {
    // The connection's onDue does exactly this: `if (c.due === 0 || c.due > now) return; c.due = 0; ...`
    let clock = 0;
    const fired: number[] = [];
    const wheel: TimerWheel<Item> = new TimerWheel<Item>(10, (it, now) => {
      if (it.due === 0 || it.due > now) return;
      it.due = 0;
      fired.push(now);
      if (fired.length < 3) wheel.schedule(it, now + 100);
    }, () => clock);
    wheel.schedule(item(), 100);
    for (clock = 10; clock <= 1000; clock += 10) wheel.advance(clock);
    expect(fired).toEqual([100, 200, 300]);
    expect(wheel.size).toBe(0);
  });
  it('does not fire a cancelled item and forgets it when its slot comes up', () => {
    const { wheel, fired, to } = fakeWheel(100);
    const a = item(1);
    wheel.schedule(a, 1500);
    expect(wheel.size).toBe(1);
    wheel.cancel(a);
    expect(wheel.size).toBe(1); // lazy
    to(1500);
    expect(fired).toEqual([]);
    expect(wheel.size).toBe(0);
  });
  it('re-files an item whose due was moved later by plain assignment (lazy reschedule)', () => {
    const { wheel, fired, to } = fakeWheel(100);
    const a = item(1);
    wheel.schedule(a, 1500);
    a.due = 3000;
    to(1500);
    expect(fired).toEqual([]);
    to(2999);
    expect(fired).toEqual([]);
    to(3000);
    expect(fired).toEqual([[1, 3000]]);
  });
  it('reschedules later through schedule() without filing a second entry', () => {
    const { wheel, fired, to } = fakeWheel(100);
    const a = item(1);
    wheel.schedule(a, 1500);
    for (let t = 1600; t < 10_000; t += 100) wheel.schedule(a, t); // kicked on every message
    expect(wheel.size).toBe(1);
    to(9899);
    expect(fired).toEqual([]);
    to(20_000);
    expect(fired).toEqual([[1, 20_000]]);
  });
  it('reschedules earlier: fires at the new time, and not again at the old one', () => {
    const { wheel, fired, to } = fakeWheel(100);
    const a = item(1);
    wheel.schedule(a, 5000);
    wheel.schedule(a, 1200);
    expect(wheel.size).toBe(1);
    to(1200);
    expect(fired).toEqual([[1, 1200]]);
    to(6000);
    expect(fired).toEqual([[1, 1200]]);
    expect(wheel.size).toBe(0);
  });
  it('handles a deadline many revolutions away', () => {
    const { wheel, fired, to } = fakeWheel(10, 8); // one revolution = 80 ms
    wheel.schedule(item(1), 1000 + 1234);
    for (let t = 1010; t < 2234; t += 10) to(t);
    expect(fired).toEqual([]);
    to(2240);
    expect(fired).toEqual([[1, 2240]]);
  });
  it('runs a periodic timer when onDue schedules the item again', () => {
    let clock = 0;
    const times: number[] = [];
    const wheel: TimerWheel<Item> = new TimerWheel<Item>(100, (it, now) => { times.push(now); wheel.schedule(it, now + 1000); }, () => clock);
    wheel.schedule(item(), 1000);
    for (clock = 100; clock <= 5000; clock += 100) wheel.advance(clock);
    expect(times).toEqual([1000, 2000, 3000, 4000, 5000]);
    expect(wheel.size).toBe(1);
  });
  it('fires everything due after a long stall, once each', () => {
    const { wheel, fired, to } = fakeWheel(100, 16);
    for (let i = 0; i < 50; i++) wheel.schedule(item(i), 1100 + i * 137);
    wheel.schedule(item(99), 1_000_000);
    to(100_000);
    expect(fired.map(([id]) => id).sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(wheel.size).toBe(1);
    to(1_000_000);
    expect(fired.at(-1)).toEqual([99, 1_000_000]);
  });
  it('schedules a deadline already in the past for the next tick, not a revolution later', () => {
    const { wheel, fired, to } = fakeWheel(100, 8);
    to(5000);
    wheel.schedule(item(1), 10);
    to(5100);
    expect(fired).toEqual([[1, 5100]]);
  });
  it('keeps firing the other items when onDue throws, then rethrows', () => {
    let clock = 0;
    const fired: number[] = [];
    const wheel = new TimerWheel<Item>(10, (it) => { if (it.id === 1) throw new Error('boom'); fired.push(it.id); }, () => clock);
    [1, 2, 3].forEach((id) => wheel.schedule(item(id), 50));
    wheel.schedule(item(4), 70);
    expect(() => wheel.advance(100)).toThrow('boom');
    expect(fired).toEqual([2, 3, 4]);
    wheel.schedule(item(5), 150);
    wheel.advance(150);
    expect(fired).toEqual([2, 3, 4, 5]);
  });
  it('handles 50,000 connections kicked on every message cheaply', () => {
    const { wheel, fired, to } = fakeWheel(100);
    const items = Array.from({ length: 50_000 }, (_, i) => item(i));
    items.forEach((it, i) => wheel.schedule(it, 26_000 + (i % 100)));
    for (let t = 1100; t <= 25_000; t += 100) {
      for (let i = t % 7; i < items.length; i += 7) wheel.schedule(items[i]!, t + 25_000); // activity
      to(t);
    }
    expect(wheel.size).toBe(50_000);
    to(200_000);
    expect(fired.length).toBe(50_000);
    expect(new Set(fired.map(([id]) => id)).size).toBe(50_000);
  });
  it.each([[0, 8], [-1, 8], [NaN, 8], [100, 0], [100, 1.5]])('rejects tickMs=%s slots=%s', (tick, slots) => {
    expect(() => new TimerWheel<Item>(tick, () => {}, () => 0, slots)).toThrow(RangeError);
  });
  it.each([NaN, Infinity])('rejects a due time of %s', (at) => {
    expect(() => fakeWheel().wheel.schedule(item(), at)).toThrow(RangeError);
  });
  it('treats a deadline at time 0 (0 means unscheduled) as due on the next tick', () => {
    let clock = 0;
    const fired: number[] = [];
    const wheel = new TimerWheel<Item>(10, (it) => { fired.push(it.id); }, () => clock);
    const a = item(7);
    wheel.schedule(a, 0);
    expect(a.due).toBe(1);
    clock = 10;
    wheel.advance(10);
    expect(fired).toEqual([7]);
  });
});

describe('TimerWheel: random schedules against a model', () => {
  type Op = { kind: 'schedule'; id: number; at: number } | { kind: 'assign'; id: number; at: number }
    | { kind: 'cancel'; id: number } | { kind: 'advance'; by: number };
  const opArb: fc.Arbitrary<Op> = fc.oneof(
    fc.record({ kind: fc.constant('schedule' as const), id: fc.nat(9), at: fc.integer({ min: 1, max: 3000 }) }),
    fc.record({ kind: fc.constant('assign' as const), id: fc.nat(9), at: fc.integer({ min: 1, max: 3000 }) }),
    fc.record({ kind: fc.constant('cancel' as const), id: fc.nat(9) }),
    fc.record({ kind: fc.constant('advance' as const), by: fc.integer({ min: 0, max: 400 }) }),
  );
  it('fires an item iff its deadline passed, never early, at most one tick late, once per deadline', () => {
    fc.assert(fc.property(fc.array(opArb, { maxLength: 60 }), fc.constantFrom(4, 16, 1024), (ops, slots) => {
      const tickMs = 10;
      let clock = 0;
      const items = Array.from({ length: 10 }, (_, i) => item(i));
      const want: (number | null)[] = items.map(() => null); // model: pending absolute deadline
      const wheel = new TimerWheel<Item>(tickMs, (it, now) => {
        const d = want[it.id];
        expect(d, `item ${it.id} fired without a deadline`).not.toBeNull();
        expect(now).toBeGreaterThanOrEqual(d!);
        expect(now - d!).toBeLessThan(tickMs + 400); // advances come in steps of up to 400
        want[it.id] = null;
      }, () => clock, slots);
      const step = (to: number) => {
        // Walk tick by tick so lateness is measurable.
        for (let t = clock + 1; t <= to; t++) {
          clock = t;
          wheel.advance(t);
          for (const d of want) if (d !== null) expect(d + tickMs).toBeGreaterThan(t); // overdue by a whole tick: a miss
        }
      };
      for (const op of ops) {
        const it = items[op.kind === 'advance' ? 0 : op.id]!;
        if (op.kind === 'schedule') { wheel.schedule(it, clock + op.at); want[it.id] = clock + op.at; }
        else if (op.kind === 'cancel') { wheel.cancel(it); want[it.id] = null; }
        else if (op.kind === 'assign') {
          // Lazy reschedule is only for moving a scheduled item later.
          if (it.due !== 0 && clock + op.at >= it.due) { it.due = clock + op.at; want[it.id] = it.due; }
        } else step(clock + op.by);
      }
      step(clock + 3000 + 2 * tickMs);
      expect(want.every((d) => d === null)).toBe(true);
      expect(wheel.size).toBe(0);
    }), { numRuns: 200 });
  });
});

describe('TimerWheel: the real interval', () => {
  afterEach(() => { vi.useRealTimers(); });
  it('advances itself every tick once started, and not after stop (fake timers, no sleeping)', () => {
    vi.useFakeTimers({ now: 0 });
    const fired: number[] = [];
    const wheel = new TimerWheel<Item>(100, (it) => { fired.push(it.id); }, () => Date.now());
    wheel.start();
    wheel.start(); // idempotent: still one interval
    wheel.schedule(item(1), 250);
    wheel.schedule(item(2), 1000);
    vi.advanceTimersByTime(300);
    expect(fired).toEqual([1]);
    expect(vi.getTimerCount()).toBe(1);
    wheel.stop();
    vi.advanceTimersByTime(2000);
    expect(fired).toEqual([1]);
    expect(vi.getTimerCount()).toBe(0);
  });
});
