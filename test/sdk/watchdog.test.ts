import { describe, expect, it } from 'vitest';
import { watchdog } from '../../src/watchdog.js';
import { manualClock } from '../support/clock.js';

describe('watchdog', () => {
  it('does not expire 1 ms before its deadline and expires at it', () => {
    const clock = manualClock();
    let fired = 0;
    const w = watchdog(clock, () => fired++);
    w.arm(35_000);
    clock.advance(34_999);
    expect(fired).toBe(0);
    clock.advance(1);
    expect(fired).toBe(1);
  });

  it('re-arming pushes the deadline (a message kicks it)', () => {
    const clock = manualClock();
    let fired = 0;
    const w = watchdog(clock, () => fired++);
    w.arm(1000);
    clock.advance(900);
    w.arm(1000);
    clock.advance(999);
    expect(fired).toBe(0);
    clock.advance(1);
    expect(fired).toBe(1);
  });

  it('check() expires at once when the wall clock passed the deadline (woken laptop, late timer)', () => {
    const clock = manualClock();
    let fired = 0;
    const w = watchdog(clock, () => fired++);
    w.arm(1000);
    clock.jump(999);
    w.check();
    expect(fired).toBe(0);
    clock.jump(1);
    w.check();
    expect(fired).toBe(1);
    w.check();
    expect(fired).toBe(1);
  });

  it('survives a timer firing early by re-arming for the rest', () => {
    const early: (() => void)[] = [];
    let now = 0;
    let fired = 0;
    const clock = { now: () => now, setTimeout: (f: () => void) => early.push(f), clearTimeout: () => {} };
    const w = watchdog(clock, () => fired++);
    w.arm(1000);
    now = 990;
    early.shift()!();
    expect(fired).toBe(0);
    expect(early).toHaveLength(1);
    now = 1000;
    early.shift()!();
    expect(fired).toBe(1);
  });

  it('stop() disarms it', () => {
    const clock = manualClock();
    let fired = 0;
    const w = watchdog(clock, () => fired++);
    w.arm(10);
    w.stop();
    clock.advance(100);
    w.check();
    expect(fired).toBe(0);
  });
});
