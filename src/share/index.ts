/**
 * Cross-tab sharing, the edges: Web Locks, BroadcastChannel, timers, page
 * lifecycle and tokens around the pure machine (./machine.ts).
 *
 * To the client facade it is an Engine (src/engine.ts): the facade cannot
 * tell a shared engine from its own. Tabs of one origin with the same server
 * URL, `transport` option and user (`sub` of their token) form a group; the tab holding
 * the group's Web Lock leads: it runs the one real engine, for the union of
 * the group's channels, and the others hear it on a BroadcastChannel. The
 * lock is held for the tab's lifetime, so a closed or crashed leader hands
 * over at once; a freezing one steps down; a stuck one misses heartbeats and
 * is replaced. A tab that cannot share leads a group of its own.
 *
 * Hand-written: no library shares a resumable connection between tabs (see
 * docs/decisions.md, "One connection per browser").
 */
import { backoff } from '../backoff.js';
import type { Engine, EngineEvent, EngineOptions, EngineSink } from '../engine.js';
import { TidingsError } from '../errors.js';
import { fellBack, session } from '../storage.js';
import { fetchToken } from '../token.js';
import type { State, Transport } from '../types.js';
import { next, tab, type Chans, type Effect, type Input, type Relay, type Tab } from './machine.js';

/**
 * In every lock and channel name: tabs running builds whose cross-tab
 * messages differ never hear each other (they simply do not share). Bump it
 * whenever a message (machine.ts `Msg`) changes shape or meaning.
 */
export const SHARE_VERSION = 'tidings.share.v3';

/**
 * The token's `sub`, and the channels of `cs` its `ch` claim does not grant: its JWT payload decoded,
 * not verified (the server verifies; the SDK only groups tabs and keeps each within its own grant).
 */
export function claims(token: string, cs: string[]): [sub: unknown, no: string[]] {
  let p: { sub?: unknown; ch?: string[] } | undefined;
  try {
    p = JSON.parse(atob(token.split('.')[1]!.replace(/-/g, '+').replace(/_/g, '/')));
  } catch {}
  // (A `ch` that is not a list grants nothing it does not equal.)
  return [p?.sub, cs.filter((c) => !([] as unknown[]).concat(p?.ch).includes(c))];
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
  const id = ' ' + Math.random();
  /**
   * The app's channels (a cursor: start there; null: keep mine). The machine takes a channel the tab does not
   * carry yet once the tab's own token grants it (admit), and a given cursor once (it is then null here).
   */
  let want = start as Chans;
  let s: Tab | undefined;
  /**
   * The group's name: none while stopped, '' until it is known, this tab's id when the tab cannot share
   * (a group of its own).
   */
  let name: string | undefined;
  let bc: BroadcastChannel | undefined;
  let release: (() => void) | undefined;
  let hold: (() => void) | undefined;
  /** Lock requests of an older generation give the lock back at once when granted. */
  let gen = 0;
  let timer: unknown;

  const alone = () => name == id;
  const show = (state: State, transport: Transport | null = null) => sink.emit({ type: 'state', state, transport });
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
      shared: true,
      // The union token must grant the union: channels it does not grant leave the group, before the hello.
      // An app that refuses a token for the union (too many channels for its backend, say) gets asked for this
      // tab's own channels: the others then leave the group the same way, rather than the group never connecting.
      token: async (x) => {
        const t = await fetchToken(o, x.channels).catch((e) => (s?.lead && !alone() ? fetchToken(o, Object.keys(s.pos)) : Promise.reject(e)));
        const no = claims(t, x.channels)[1];
        if (no[0] && s?.lead && !alone()) fx.post({ k: 'd', n: s.n, c: no });
        return t;
      },
    },
    {},
    // Errors cross tabs as plain data (a structured clone keeps only an Error's message): rebuilt in fx.emit.
    {
      emit(x) {
        const i: Input = { k: 'eng', e: x.type === 'error' ? { type: 'error', error: { ...x.error, message: x.error.message } } : (x as Relay) };
        halted();
        held ? held.push(i) : dispatch(i);
      },
    },
  );

  /** When this tab last beat or heard its engine. */
  let awake = clock.now();
  /** The engine's events held while a leader back from a halt asks whose the lock is (undefined: not asking). */
  let held: Input[] | undefined;
  /**
   * A leading page halted for longer than the grace (hung, paused in a debugger) may have been replaced: a follower
   * took the lock and marked as `first` in its tab what this engine's socket received meanwhile. Its events wait
   * until the lock manager says whose the lock is: still this tab's (the page of its tab lock), they go on; else it
   * follows, before it hears of the newer leader. A late timer alone cannot tell: browsers delay a background tab's
   * timers for up to a minute, and stepping down on that would hand the connection over every minute there.
   */
  const halted = () => {
    const t = clock.now();
    if (t - awake > o.grace && s?.lead && !held) {
      held = [];
      void locks.query().then(({ held: h = [] }) => {
        const q = held;
        const who = (n: string) => h.find((l) => l.name == n)?.clientId;
        held = undefined;
        if (q) who(name!) == who(name + id) ? q.forEach(dispatch) : follow();
      });
    }
    awake = t;
  };

  const fx: { [K in Effect[0]]: (a: Extract<Effect, [K, ...unknown[]]>[1]) => unknown } = {
    post: (m) => (bc?.postMessage(m), dispatch(m)),
    emit: (e) => {
      const x = e['error'] as TidingsError;
      sink.emit((x ? { type: 'error', error: Object.assign(new TidingsError(x.code), x) } : e) as EngineEvent);
    },
    // On every step: the facade passes on changes only. A stop of the shared engine (a fatal error in the leader) stops this tab too.
    // `connecting` while a channel the app asked for waits for its check, as one engine reconnects for a new one.
    // A group on WebSocket clears this tab's memory of a fallback: it may lead again after another tab's engine
    // went back to WebSocket, and would start a working group on polling.
    show: ([st, tr]) => {
      if (st == 'stopped') (name = undefined), leave();
      if (tr == 'websocket') session(fellBack(o.httpUrl), null);
      tr && Object.keys(want).some((x) => !(x in s!.pos)) ? show('connecting') : show(st, tr);
    },
    // A leader's engine starts from the tabs' cursors only (down() left it none).
    chans: (c) => (E.channels(c), E.start()),
    // Left waiting if this tab stops leading: the machine ignores `gone` in a follower.
    watch: (f) => locks.request(name + f, () => dispatch({ k: 'gone', f })),
    steal: lock,
    yield: follow,
    // A group of its own, from this tab's cursors: it connects alone, with its own token.
    solo,
  };

  function solo() {
    if (!alone()) leave(), join(id);
  }

  /** Ask for the leader lock (or take it from a stuck leader). Held until the tab steps down, closes or dies. */
  function lock(steal?: boolean) {
    const g = ++gen;
    locks
      .request(name!, { steal }, () =>
        g == gen ? (dispatch({ k: 'lead', now: clock.now() }), new Promise<void>((r) => (release = r))) : 0,
      )
      // Rejected: stolen while leading: follow.
      .catch(() => g == gen && follow());
  }

  /** Stop leading: release the lock, forget lock requests still waiting, stop the engine (its last events unheard: the machine no longer leads). */
  function down() {
    release?.();
    release = undefined;
    held = undefined;
    gen++;
    dispatch({ k: 'step' });
    E.stop();
    E.channels({});
  }

  function follow() {
    down();
    if (s) lock();
  }

  const tick = () => {
    halted();
    dispatch({ k: 'tick' });
    timer = clock.setTimeout(tick, o.grace / 2);
  };

  // A frozen page runs nothing: a leader steps down first (`freeze`), and asks for the lock again when back
  // (`resume`; the heartbeat finds out where the stream is). For the engine's lifetime: after close() they
  // find nothing to do. (Nothing runs in between that could ask for the lock: a follower's lock request
  // that the browser grants while the page is frozen gives the lock back on resume, of an older generation.)
  document.addEventListener('freeze', down);
  document.addEventListener('resume', follow);

  /** What of the app's channels the machine may take now: those it has, and `ok` (just checked; all when alone). */
  const take = (ok: string[]) => {
    const c: Chans = {};
    for (const x in want) if (alone() || x in (s?.pos ?? {}) || ok.includes(x)) (c[x] = want[x]!), (want[x] = null);
    return c;
  };

  function join(n: string, ok: string[] = []) {
    name = n;
    // The tab's channels at once, not through the input queue: a tab going solo joins its own group from an
    // effect, with inputs still queued, and a lock can be granted before they are done (Node's lock manager
    // calls back from request()). The report below must read them.
    s = tab(id, take(ok));
    tick();
    // The group hears of this tab only once it holds its own lock: a leader that watched the lock before would
    // find it free and drop the tab's channels (a page's first lock request can take longer than a message's
    // round trip). Until then its reports reach only itself. A grant for a group this tab has left since, or
    // has joined again meanwhile, is given back at once.
    locks.request(
      n + id,
      () =>
        name == n &&
        !bc &&
        new Promise<void>((r) => {
          hold = r;
          bc = new BroadcastChannel(n);
          bc.onmessage = (e) => dispatch(e.data);
          dispatch({ k: 'chans', c: s!.pos });
          lock();
        }),
    );
  }

  function leave() {
    // Where this tab is, for start() after close() and for a group of its own: kept, as one engine keeps its cursors.
    for (const c in want) want[c] = s?.pos[c] ?? want[c]!;
    s = undefined; // the machine hears nothing more: the facade gets no state but the caller's
    down();
    hold?.();
    bc?.close();
    bc = undefined;
    clock.clearTimeout(timer);
  }

  /**
   * The tab's own token must grant a channel before the tab carries it: a tab never hears a channel its own token
   * would not let it read. One check at a time: channel changes apply in the order they were made, whatever order
   * the token calls end in. A token call that fails (or outlasts tokenTimeout) is an `error` and is made again
   * after a backoff, as in one engine; the tab waits `connecting` meanwhile.
   */
  let checks: Promise<unknown> = Promise.resolve();
  const admit = (cs: string[]) => {
    const run = async (n: number): Promise<unknown> => {
      if (name == null) return;
      let t: [unknown, string[]] = ['', []];
      try {
        // (A group of its own needs no check: its engine uses this tab's token.) Offline, it waits for `online`, as
        // one engine does: a token call would fail (or not be made), and a tab not joined yet says `offline`.
        if (!alone()) {
          if (navigator.onLine === false) {
            name || show('offline');
            await new Promise((r) => addEventListener('online', r, { once: true }));
            // (Stopped meanwhile: no token call.)
            if (name == null) return;
            name || show('connecting');
          }
          t = claims(await fetchToken(o, cs), cs);
        }
      } catch (e) {
        // (Stopped meanwhile: nothing to report, and the checks after this one need not wait.)
        if (name == null) return;
        sink.emit({ type: 'error', error: e as TidingsError });
        await new Promise<void>((r) => clock.setTimeout(r, backoff(n, o.base, o.cap, o.random)));
        return run(n + 1);
      }
      const [sub, no] = t;
      // Granted: joined, the machine takes them; not joined yet, the tab joins its user's group with them.
      if (name != null)
        typeof sub != 'string' || no[0] ? solo() : name ? dispatch({ k: 'chans', c: take(cs) }) : join(SHARE_VERSION + ' ' + o.httpUrl + ' ' + o.mode + ' ' + sub, cs);
    };
    checks = checks.then(() => run(0));
  };

  return {
    start() {
      if (name != null) return;
      // `connecting` at once, as the engine does: ready() right after createClient() must wait, not reject.
      show('connecting');
      name = '';
      // Joins with the channels checked, once (a stop and a start while a check runs leave two checks to finish).
      admit(Object.keys(want));
    },
    stop() {
      if (name != null) (name = undefined), leave(), show('stopped');
    },
    reconnect: () => fx.post({ k: 'r' }),
    channels(c) {
      // A channel kept (null) keeps its cursor: the machine's while the tab runs, the one leave() kept while stopped.
      if (name == null) for (const x in c) c[x] ??= want[x];
      want = c;
      // At once: the channels dropped, and a cursor given for one the tab has (neither needs a check); and the
      // state, `connecting` if a new channel waits for its check (fx.show).
      const now = take([]);
      dispatch({ k: 'chans', c: now });
      const cs = Object.keys(c).filter((x) => !(x in now));
      if (name != null && cs[0]) admit(cs);
    },
    leader: () => !!s?.lead,
    // Channels without a cursor yet left out, as the engine does.
    cursors: () => JSON.parse(JSON.stringify(s?.pos ?? want, (_, v) => v ?? undefined)),
  };
}
