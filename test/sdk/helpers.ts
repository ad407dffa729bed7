/**
 * Shared set-up for SDK tests: the msw fake server (test/support/msw-server.ts),
 * a manual clock, a seeded random source, stubbed browser globals
 * (navigator.onLine, document.visibilityState, window events on globalThis),
 * and a client whose emissions are recorded.
 */
import { setupServer } from 'msw/node';
import { afterAll, afterEach, beforeAll, beforeEach, vi } from 'vitest';
import { readFileSync } from 'node:fs';
import { createClient as fromSource, type Client, type ClientOptions, type EventMessage, type ResetMessage, type State, type TidingsError } from '../../src/index.js';
import { flush, manualClock, seeded, type ManualClock } from '../support/clock.js';
import { fakeTidings } from '../support/msw-server.js';

export { flush, manualClock, seeded };

/**
 * The client under test: src/ by default; with TIDINGS_SDK=dist
 * (vitest.bundle.config.ts, run by `npm test` after the build) the shipped
 * dist/tidings.min.js, so the behaviour suites also run the minified bundle.
 */
export const createClient: typeof fromSource =
  process.env.TIDINGS_SDK === 'dist'
    ? new Function(readFileSync(new URL('../../dist/tidings.min.js', import.meta.url), 'utf8') + '\nreturn Tidings;')().createClient
    : fromSource;

export interface Harness {
  c: Client;
  clock: ManualClock;
  events: EventMessage[];
  resets: ResetMessage[];
  states: State[];
  errors: TidingsError[];
  /** Advance the fake clock by ms, one due timer at a time, letting msw and promises run after each. */
  tick(ms?: number): Promise<void>;
}

export function useFake() {
  const fake = fakeTidings();
  const server = setupServer(...fake.handlers);
  const target = new EventTarget();
  const nav = { onLine: true };
  const doc = Object.assign(new EventTarget(), { visibilityState: 'visible' as DocumentVisibilityState });
  let live: Client[] = [];

  beforeAll(() => server.listen({ onUnhandledFrame: 'error' }));
  afterAll(() => server.close());
  beforeEach(() => {
    nav.onLine = true;
    doc.visibilityState = 'visible';
    vi.stubGlobal('navigator', nav);
    vi.stubGlobal('document', doc);
    vi.stubGlobal('addEventListener', target.addEventListener.bind(target));
    vi.stubGlobal('removeEventListener', target.removeEventListener.bind(target));
    const mem = new Map<string, string>();
    vi.stubGlobal('sessionStorage', {
      getItem: (k: string) => mem.get(k) ?? null,
      setItem: (k: string, v: string) => void mem.set(k, v),
      removeItem: (k: string) => void mem.delete(k),
    });
  });
  afterEach(async () => {
    live.forEach((c) => c.close());
    live = [];
    await flush();
    fake.reset();
    server.resetHandlers();
    vi.unstubAllGlobals();
  });

  /** A recorded client; `createClient` may be swapped for a built bundle's. */
  function client(opts: Partial<ClientOptions> & { createClient?: typeof createClient } = {}, clock = manualClock()): Harness {
    const { createClient: make = createClient, ...rest } = opts;
    const c = make({ url: fake.base, token: 'tok', channels: ['a', 'b'], clock, random: seeded(7), ...rest });
    live.push(c);
    const h: Harness = {
      c,
      clock,
      events: [],
      resets: [],
      states: [],
      errors: [],
      async tick(ms = 0) {
        // Step timer by timer, letting promises and msw run in between, so
        // work a timer starts can schedule its own timers inside this span.
        await flush();
        let left = ms;
        for (let steps = 0; ; steps++) {
          if (steps > 5000) throw new Error('tick: more than 5000 timers in one span, a hot loop?');
          const next = clock.pending()[0];
          if (next === undefined || next > left) break;
          clock.advance(next);
          left -= next;
          await flush();
        }
        clock.advance(left);
        await flush();
      },
    };
    c.on('event', (e) => h.events.push(e));
    c.on('reset', (e) => h.resets.push(e));
    c.on('state', (s) => h.states.push(s));
    c.on('error', (e) => h.errors.push(e));
    return h;
  }

  /** Fire a window event (online, offline, focus) or document visibilitychange. */
  const fire = (name: string) => (name === 'visibilitychange' ? doc : target).dispatchEvent(new Event(name));

  return { fake, server, client, nav, doc, fire };
}

/** Cursor values of recorded events, in order. */
export const cursorsOf = (h: Harness) => h.events.map((e) => `${e.channel}@${e.cursor}`);
