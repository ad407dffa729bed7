import { describe, expect, it } from 'vitest';
import { HeldPolls, type Waiter } from '../../server/http/held-polls.js';
import { MemoryBus } from '../../server/pubsub/memory-bus.js';

function waiter(channels: string[], deadline: number, log: string[], name = 'w'): Waiter {
  return { channels, deadline, phase: 'evaluating', dirty: false, wake: (reason) => log.push(`${name}:${reason}`) };
}

const ev = (channel: string) => ({ channel, cursor: 'e-1', json: '1' });

describe('HeldPolls', () => {
  it('watches a waiter\'s channels while registered and unwatches them after', () => {
    const bus = new MemoryBus();
    const held = new HeldPolls(bus, { sweepIntervalMs: 0 });
    const w = waiter(['a', 'b'], 10, []);
    held.register(w);
    expect([bus.isWatched('a'), bus.isWatched('b'), held.size]).toEqual([true, true, 1]);
    held.unregister(w);
    held.unregister(w); // twice is harmless and does not unwatch twice
    expect([bus.isWatched('a'), bus.isWatched('b'), held.size]).toEqual([false, false, 0]);
  });

  it('wakes a held waiter on an event of its channel, once, and not on other channels', () => {
    const log: string[] = [];
    const held = new HeldPolls(new MemoryBus(), { sweepIntervalMs: 0 });
    const w = waiter(['a'], 10, log);
    held.register(w);
    w.phase = 'held';
    held.onEvent(ev('b'));
    expect(log).toEqual([]);
    held.onEvent(ev('a'));
    held.onEvent(ev('a')); // already evaluating: marked dirty, not woken again
    expect(log).toEqual(['w:event']);
    expect(w.phase).toBe('evaluating');
    expect(w.dirty).toBe(true);
  });

  it('marks a waiter that is reading history dirty instead of waking it', () => {
    const log: string[] = [];
    const held = new HeldPolls(new MemoryBus(), { sweepIntervalMs: 0 });
    const w = waiter(['a'], 10, log);
    held.register(w);
    held.onEvent(ev('a'));
    expect(log).toEqual([]);
    expect(w.dirty).toBe(true);
  });

  it('expires a held waiter at its deadline and not 1 ms before', () => {
    const log: string[] = [];
    const held = new HeldPolls(new MemoryBus(), { sweepIntervalMs: 0 });
    const w = waiter(['a'], 1000, log);
    held.register(w);
    w.phase = 'held';
    held.sweep(999);
    expect(log).toEqual([]);
    held.sweep(1000);
    expect(log).toEqual(['w:deadline']);
  });

  it('releases every held waiter while draining, whatever the deadline', () => {
    const log: string[] = [];
    let draining = false;
    const held = new HeldPolls(new MemoryBus(), { sweepIntervalMs: 0, isDraining: () => draining });
    for (const name of ['x', 'y']) {
      const w = waiter(['a'], 1e12, log, name);
      held.register(w);
      w.phase = 'held';
    }
    held.sweep(0);
    expect(log).toEqual([]);
    draining = true;
    held.sweep(0);
    expect(log).toEqual(['x:drain', 'y:drain']);
  });

  it('reports its size on every change', () => {
    const sizes: number[] = [];
    const held = new HeldPolls(new MemoryBus(), { sweepIntervalMs: 0, onSize: (n) => sizes.push(n) });
    const a = waiter(['a'], 1, []);
    const b = waiter(['b'], 1, []);
    held.register(a);
    held.register(b);
    held.unregister(a);
    held.unregister(b);
    expect(sizes).toEqual([1, 2, 1, 0]);
  });
});
