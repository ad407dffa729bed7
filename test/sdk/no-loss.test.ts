/**
 * Property: whatever the network does (sockets dropped with any backoff code,
 * WebSocket refused so the client falls back to polling, polls failing,
 * probes switching back, slow welcomes that replay what polling delivered,
 * reconnect() calls, close() and start() again, a channel dropped and
 * subscribed again from its cursor), once it settles every published
 * event has been delivered exactly once, in publish order per channel.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { seeded, useFake } from './helpers.js';

const { fake, client } = useFake();

type Action =
  | { k: 'publish'; ch: 'a' | 'b' }
  | { k: 'tick'; ms: number }
  | { k: 'drop'; code: number }
  | { k: 'ws'; mode: 'ok' | 'refuse' | 'mute' }
  | { k: 'answer' }
  | { k: 'pollFail' }
  | { k: 'reconnect' }
  | { k: 'restart' }
  | { k: 'resubscribe' };

const action: fc.Arbitrary<Action> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ k: fc.constant('publish' as const), ch: fc.constantFrom('a' as const, 'b' as const) }) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant('tick' as const), ms: fc.integer({ min: 0, max: 5000 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('drop' as const), code: fc.constantFrom(1000, 1006, 1011, 1012, 1013, 4408) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('ws' as const), mode: fc.constantFrom('ok' as const, 'refuse' as const, 'mute' as const) }) },
  { weight: 1, arbitrary: fc.constant({ k: 'answer' as const }) },
  { weight: 1, arbitrary: fc.constant({ k: 'pollFail' as const }) },
  { weight: 1, arbitrary: fc.constant({ k: 'reconnect' as const }) },
  { weight: 1, arbitrary: fc.constant({ k: 'restart' as const }) },
  { weight: 1, arbitrary: fc.constant({ k: 'resubscribe' as const }) },
);

describe('no loss, no duplicates', () => {
  it('delivers every event once, in order, across drops, fallback and probes', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(action, { minLength: 5, maxLength: 30 }), fc.integer(), async (actions, seed) => {
        fake.reset();
        const h = client({ random: seeded(seed), fallbackAfter: 1, probe: { first: 2000, max: 8000 }, longPoll: 5 });
        const published: Record<string, unknown[]> = { a: [], b: [] };
        let n = 0;
        await h.tick();
        for (const x of actions) {
          if (x.k === 'publish') {
            published[x.ch]!.push(++n);
            fake.publish(x.ch, n);
          } else if (x.k === 'tick') await h.tick(x.ms);
          else if (x.k === 'drop') fake.closeAll(x.code, '100');
          else if (x.k === 'ws') fake.knobs.ws = x.mode;
          else if (x.k === 'answer') fake.answerMuted(); // a slow welcome: replays what polling may have delivered
          else if (x.k === 'pollFail') fake.knobs.pollQueue.push('network');
          else if (x.k === 'restart') h.c.close(), h.c.start(); // close() and start again from the cursors held
          else if (x.k === 'resubscribe') {
            // b dropped and subscribed again from its cursor; a must lose nothing meanwhile.
            const from = h.c.cursors().b ?? null;
            h.c.unsubscribe('b');
            h.c.subscribe('b', from);
          }
          else h.c.reconnect();
          await h.tick();
        }
        fake.knobs.ws = 'ok';
        fake.answerMuted();
        fake.knobs.pollQueue.length = 0;
        for (let i = 0; i < 12; i++) await h.tick(5000);
        const got: Record<string, unknown[]> = { a: [], b: [] };
        for (const e of h.events) got[e.channel]!.push(e.data);
        h.c.close();
        expect(h.resets).toEqual([]);
        // Failed attempts and polls are reported (NETWORK, HTTP); nothing else may be.
        expect(h.errors.filter((e) => e.code !== 'NETWORK' && e.code !== 'HTTP')).toEqual([]);
        expect(got).toEqual(published);
      }),
      { numRuns: 25, seed: 1234 },
    );
  }, 120_000);
});
