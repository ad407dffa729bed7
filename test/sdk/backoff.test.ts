import { describe, expect, it } from 'vitest';
import { MAX_RESTART_WINDOW, backoff, probeDelay, restartDelay } from '../../src/backoff.js';
import { seeded } from '../support/clock.js';

describe('backoff (full jitter)', () => {
  it('is 0 when random() is 0 and just under the bound when random() is near 1', () => {
    expect(backoff(3, 1000, 30_000, () => 0)).toBe(0);
    expect(backoff(3, 1000, 30_000, () => 0.999999)).toBeCloseTo(8000, 0);
  });

  it('doubles the bound per attempt until the cap', () => {
    const bound = (n: number) => backoff(n, 1000, 30_000, () => 1);
    expect([0, 1, 2, 3, 4, 5, 6].map(bound)).toEqual([1000, 2000, 4000, 8000, 16000, 30000, 30000]);
  });

  it('stays finite and capped for huge attempt numbers', () => {
    expect(backoff(10_000, 1000, 30_000, () => 1)).toBe(30_000);
  });

  it('spreads delays uniformly over [0, bound) with a seeded source', () => {
    const r = seeded(42);
    const xs = Array.from({ length: 4000 }, () => backoff(2, 1000, 30_000, r));
    expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...xs)).toBeLessThan(4000);
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(mean).toBeGreaterThan(1900);
    expect(mean).toBeLessThan(2100);
    // every quarter of the range gets roughly a quarter of the draws
    for (let q = 0; q < 4; q++) {
      const share = xs.filter((x) => x >= q * 1000 && x < (q + 1) * 1000).length / xs.length;
      expect(share).toBeGreaterThan(0.22);
      expect(share).toBeLessThan(0.28);
    }
  });
});

describe('restartDelay (1012 window)', () => {
  it('is uniform in [0, window] for a decimal reason', () => {
    expect(restartDelay('5000', () => 0)).toBe(0);
    expect(restartDelay('5000', () => 0.5)).toBe(2500);
    expect(restartDelay('5000', () => 0.999)).toBeCloseTo(4995);
    expect(restartDelay('0', () => 0.7)).toBe(0);
  });

  it('caps the window at MAX_RESTART_WINDOW, at and past the limit', () => {
    expect(restartDelay(String(MAX_RESTART_WINDOW), () => 1)).toBe(MAX_RESTART_WINDOW);
    expect(restartDelay(String(MAX_RESTART_WINDOW + 1), () => 1)).toBe(MAX_RESTART_WINDOW);
  });

  it('returns undefined for a reason that is not a decimal number', () => {
    for (const r of ['', 'soon', '-5', '1.5', '1e3', ' 100']) expect(restartDelay(r, () => 0.5)).toBeUndefined();
  });
});

describe('probeDelay', () => {
  it('starts at [first/2, first] and doubles up to max', () => {
    expect(probeDelay(0, 30_000, 300_000, () => 0)).toBe(15_000);
    expect(probeDelay(0, 30_000, 300_000, () => 1)).toBe(30_000);
    expect(probeDelay(1, 30_000, 300_000, () => 1)).toBe(60_000);
    expect(probeDelay(3, 30_000, 300_000, () => 1)).toBe(240_000);
    expect(probeDelay(4, 30_000, 300_000, () => 1)).toBe(300_000);
    expect(probeDelay(50, 30_000, 300_000, () => 0)).toBe(150_000);
  });
});
