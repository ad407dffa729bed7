/**
 * Cross-tab sharing, the edges: Web Locks, BroadcastChannel, timers, page
 * lifecycle and tokens around the pure machine (./machine.ts).
 *
 * To the client facade it is an Engine (src/engine.ts): the facade cannot
 * tell a shared engine from its own. Tabs of one origin with the same server
 * URL and the same user (`sub` of their token) form a group; the tab holding
 * the group's Web Lock leads: it runs the one real engine, for the union of
 * the group's channels, and the others hear it on a BroadcastChannel. The
 * lock is held for the tab's lifetime, so a closed or crashed leader hands
 * over at once; a freezing one steps down; a stuck one misses heartbeats and
 * is replaced.
 *
 * Hand-written: no library shares a resumable connection between tabs (see
 * docs/decisions.md, "One connection per browser").
 */
import type { Engine, EngineEvent, EngineOptions, EngineSink } from '../engine.js';
import { TidingsError } from '../errors.js';
import { next, tab, type Chans, type Effect, type Input, type Relay, type Tab } from './machine.js';

/**
 * In every lock and channel name: tabs running builds whose cross-tab
 * messages differ never hear each other (they simply do not share). Bump it
 * whenever a message (machine.ts `Msg`) changes shape or meaning.
 */
export const SHARE_VERSION = 'tidings.share.v2';
/** How long a new leader waits for the other tabs' reports before it connects, ms. */
export const GATHER = 50;

/**
 * The token's `sub`, and the channels of `cs` its `ch` claim does not grant: its JWT payload decoded,
 * not verified (the server verifies; the SDK only groups tabs and keeps each within its own grant).
 */
export function claims(token: string, cs: string[]): [sub: unknown, no: string[]] {
  let p;
  try {
    p = JSON.parse(atob(token.split('.')[1]!.replace(/-/g, '+').replace(/_/g, '/')));
  } catch {}
  const ch: unknown[] = Array.isArray(p?.ch) ? p.ch : [];
  return [p?.sub, cs.filter((c) => !ch.includes(c))];
}

/** A browser tab: the only place with tabs to share with (Node 24 has BroadcastChannel and locks, but no document). */
export const canShare = (): boolean => {
  const g = globalThis as { document?: unknown; navigator?: { locks?: unknown }; BroadcastChannel?: unknown };
  return !!(g.document && g.navigator?.locks && g.BroadcastChannel);
};

type Make = (o: EngineOptions, start: Record<string, string | undefined>, sink: EngineSink) => Engine;

export function sharedEngine(o: EngineOptions, start: Record<string, string | undefined>, sink: EngineSink, make: Make): Engine {
  const locks = navigator.locks;
  const { clock } = o;
  let want = start as Chans;
  let s: Tab | undefined;
  let running = false;
  let frozen = false;
  /** E carries the group's channels (this tab leads), or this tab's own (it cannot share), or rests. */
  let lead = false;
  let solo = false;
  let name = '';
  let bc: BroadcastChannel | undefined;
  let release: (() => void) | undefined;
  let hold: (() => void) | undefined;
  let lac = new AbortController();
  let timer: unknown;

  const token = (channels: string[]) => Promise.resolve(typeof o.token === 'string' ? o.token : o.token({ channels }));
  // Inputs that effects cause (our own posts, looped back) wait until the effects before them are done.
  const queue: Input[] = [];
  const dispatch = (i: Input) => {
    if (queue.push(i) < 2)
      for (; queue.length; queue.shift())
        if (s) {
          const r = next(s, queue[0]!);
          s = r.state;
          for (const [f, a] of r.effects) fx[f](a as never);
        }
  };

  const E = make(
    {
      ...o,
      // The union token must grant the union: channels it does not grant leave the group, before the hello.
      token: async (x) => {
        const t = await token(x.channels);
        const no = claims(t, x.channels)[1];
        if (lead && no[0]) dispatch({ k: 'deny', c: no });
        return t;
      },
    },
    {},
    {
      // Errors cross tabs as plain data (a structured clone keeps only an Error's message): rebuilt in out().
      emit: (x) => (solo ? sink.emit(x) : lead && dispatch({ k: 'eng', e: x.type === 'error' ? { type: 'error', error: { ...x.error, message: x.error.message } } : (x as Relay) })),
    },
  );

  const fx: { [K in Effect[0]]: (a: Extract<Effect, [K, ...unknown[]]>[1]) => unknown } = {
    post: (m) => (bc?.postMessage(m), dispatch(m)),
    emit: (e) => out(e),
    // A leader's engine starts from the tabs' cursors only (down() left it none).
    chans: (c) => (E.channels(c), E.start()),
    reconnect: () => E.reconnect(),
    // Left waiting if this tab stops leading: the machine ignores `gone` in a follower.
    watch: (f) => locks.request(name + f, () => dispatch({ k: 'gone', f })),
    steal: () => lock(true),
    yield: () => follow(),
    solo: () => alone(),
  };

  /** To the facade. A stop of the shared engine (a fatal error in the leader) stops this tab too. */
  function out(e: Relay) {
    if (e.state === 'stopped') (running = false), leave();
    const x = e['error'] as TidingsError;
    sink.emit((x ? { type: 'error', error: Object.assign(new TidingsError(x.code), x) } : e) as EngineEvent);
  }

  /** Ask for the leader lock (or take it from a stuck leader). Held until the tab steps down, closes or dies. */
  function lock(steal?: boolean) {
    lac.abort();
    const ac = (lac = new AbortController());
    locks
      .request(name, steal ? { steal } : { signal: ac.signal }, () => {
        lead = true;
        dispatch({ k: 'lead', now: clock.now() });
        clock.setTimeout(() => dispatch({ k: 'go' }), GATHER);
        return new Promise<void>((r) => (release = r));
      })
      // Rejected: aborted while waiting, or stolen while leading: then follow.
      .catch(() => ac === lac && release && follow());
  }

  /** Stop leading: release the lock, stop the engine (its last events unheard). */
  function down() {
    release?.();
    release = undefined;
    dispatch({ k: 'step' });
    if (lead) (lead = false), E.stop(), E.channels({});
  }

  const follow = () => {
    down();
    if (!frozen && running) lock();
  };

  const tick = () => {
    dispatch({ k: 'tick' });
    timer = clock.setTimeout(tick, o.grace / 2);
  };

  // A frozen page runs nothing: a leader steps down first (`freeze`, or `pagehide` into the back/forward cache) and follows after.
  const sleep = () => {
    frozen = true;
    down();
  };
  // Back: the heartbeat finds out where the stream is (and whether the leader still leads).
  const wake = () => {
    if (frozen && s) lock();
    frozen = false;
  };
  // For the engine's lifetime: after close() they find nothing to do.
  document.addEventListener('freeze', sleep);
  document.addEventListener('resume', wake);

  function leave() {
    s = undefined; // the machine hears nothing more: the facade gets no state but the caller's
    down();
    lac.abort();
    hold?.();
    bc?.close();
    clock.clearTimeout(timer);
  }

  /** This tab's channels cannot be shared: the engine carries them alone, from this tab's cursors. */
  function alone() {
    const from: Chans = {};
    for (const c in want) from[c] = s?.pos[c] ?? want[c]!;
    leave();
    solo = true;
    E.channels(from);
    if (running) E.start();
  }

  /** The tab's own token must grant its channels: a tab never hears a channel its own token would not let it read. */
  const admit = (then: (sub: string) => void) =>
    token(Object.keys(want)).then(
      (t) => {
        const [sub, no] = claims(t, Object.keys(want));
        if (running && !solo) typeof sub == 'string' && !no[0] ? then(sub) : alone();
      },
      () => running && !solo && alone(),
    );

  return {
    start() {
      if (running) return;
      running = true;
      if (solo) return E.start();
      // `connecting` at once, as the engine does: ready() right after createClient() must wait, not reject.
      sink.emit({ type: 'state', state: 'connecting', transport: null });
      admit((sub) => {
        name = SHARE_VERSION + ' ' + o.httpUrl + ' ' + sub;
        const id = ' ' + Math.random();
        s = tab(id, {});
        bc = new BroadcastChannel(name);
        bc.onmessage = (e) => dispatch(e.data);
        locks.request(name + id, () => new Promise<void>((r) => (hold = r))).catch(() => 0);
        dispatch({ k: 'chans', c: want });
        lock();
        tick();
      });
    },
    stop() {
      const was = running;
      running = false;
      if (solo) return E.stop();
      if (was) leave(), sink.emit({ type: 'state', state: 'stopped', transport: null });
    },
    reconnect: () => (solo ? E.reconnect() : fx.post({ k: 'r' })),
    channels(c) {
      want = c;
      if (solo) return E.channels(c);
      if (s) admit(() => dispatch({ k: 'chans', c }));
    },
    leader: () => solo || lead,
    cursors() {
      if (solo) return E.cursors();
      const out: Record<string, string> = {};
      for (const c in s?.pos) if (s.pos[c]) out[c] = s.pos[c];
      return out;
    },
  };
}
