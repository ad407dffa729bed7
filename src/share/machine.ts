/**
 * Cross-tab sharing, the pure part: one state machine per tab, for both roles.
 *
 * The leader runs the one engine, for the union of every tab's channels, and
 * relays each event with the cursor it follows (`p`: the engine's cursor of
 * that channel before it). Every tab keeps its own cursor per channel (`pos`)
 * and takes an event only if it follows that cursor: so each tab gets each
 * event once and in order, whichever leader relays it, and skips a replay
 * until the replay reaches its own cursor. The leader's own tab hears its own
 * messages (the edge loops every post back): it is a tab like the others.
 *
 * The leader keeps no replay buffer. When a tab's cursor is not where the
 * shared stream is (a new tab with cursors, a lagging tab after a takeover, a
 * tab back from a freeze), the tab asks the leader to restart that channel
 * from its own cursor (`g`); the server replays, and every other tab skips
 * the replayed events it already has. A tab knows it is behind when the
 * leader says the channel is live (`v`: its replay is over) at a cursor that
 * is not the tab's.
 *
 * Cursors are opaque: nothing here orders them, it only compares them.
 */
import type { State, Transport } from '../types.js';

/** Channel → cursor (null: none; to start with: from now on). */
export type Chans = Record<string, string | null>;

/** What an engine emits (src/engine.ts EngineEvent), as it crosses tabs. */
export type Relay = { type: string; channel?: string; cursor?: string; to?: Chans; state?: State; transport?: Transport | null; [k: string]: unknown };

/**
 * Messages between tabs, on one BroadcastChannel per server URL and user.
 * Short keys: every tab receives every message. The protocol version is in
 * the channel's name (src/share/index.ts), so builds that disagree never meet.
 */
export type Msg =
  /** tab `f`: carry my channels (a cursor: where to start one you do not carry yet). Also the heartbeat. */
  | { k: 'j'; f: string; c: Chans; n?: undefined }
  /** tab: the shared stream of `c` is not at my cursor: restart it from `x`. */
  | { k: 'g'; c: string; x: string; n?: undefined }
  /** tab: reconnect() */
  | { k: 'r'; n?: undefined }
  /** leader of term `n` (every leader message carries it): I lead now: report (j). */
  | { k: 'q'; n: number }
  /** leader: what my engine emitted; an event or reset follows cursor `p`; `w`: the tab whose copy is `first`. */
  | { k: 'e'; n: number; e: Relay; p?: string | null; w?: string | undefined }
  /** leader: these channels are live (replay over) at these cursors; my engine's state. The answer to `j`. */
  | { k: 'v'; n: number; c: Chans; s: Tab['st'] }
  /** leader: my token does not grant these channels. */
  | { k: 'd'; n: number; c: string[] };

export interface Lead {
  /** My term (Tab.n may grow past it when a newer leader speaks: then my word is the stale one). */
  n: number;
  /** Every tab (this one too) → its channels, with the cursor it reported. */
  tabs: Record<string, Chans>;
  /** The engine's channels → its cursor, as it emitted them (null: no head yet); null before it starts. */
  at: Chans | null;
  /** Channels whose replay is not over → its last cursor ('' while unknown). */
  end: Record<string, string>;
}

export interface Tab {
  id: string;
  /** My channels → my cursor. */
  pos: Chans;
  /** My channels known to be in step with the shared stream (1), or waiting for a restart (0). */
  ok: Record<string, number>;
  /** The shared engine's state (in the leader, its own engine's). */
  st: [State, Transport | null];
  /** What the facade was last told (state + transport). */
  shown: string;
  /** Heartbeats the leader left unanswered. */
  miss: number;
  /**
   * The newest leader term heard. A leader takes a term above every one its tab has heard (the clock
   * at its election, or one more); messages of an older term, a stepped-down leader's late words, are
   * ignored, so they can neither garble the state shown nor count as the leader's heartbeat.
   */
  n: number;
  lead?: Lead | undefined;
}

export type Input =
  /** A message from another tab, or one of ours looped back. */
  | Msg
  /** The leader's engine emitted. */
  | { k: 'eng'; e: Relay; n?: undefined }
  /** This tab got the leader lock at time `now`: its term, unless it heard one as late. */
  | { k: 'lead'; now: number; n?: undefined }
  /** Leader: the first reports are in: start the engine. */
  | { k: 'go'; n?: undefined }
  /** Stop leading (closed, frozen, lock stolen). */
  | { k: 'step'; n?: undefined }
  /** Heartbeat timer. */
  | { k: 'tick'; n?: undefined }
  /** Tab `f` is gone (its lock was released). */
  | { k: 'gone'; f: string; n?: undefined }
  /** Leader: the union token does not grant these channels. */
  | { k: 'deny'; c: string[]; n?: undefined }
  /** This tab's channel set changed (cursor: start there; null: keep mine, else from now on). */
  | { k: 'chans'; c: Chans; n?: undefined };

export type Effect =
  | ['post', Msg]
  | ['emit', Relay]
  /** Leader: engine.channels(), and start it (from these cursors if it was not running). */
  | ['chans', Chans]
  | ['reconnect']
  /** Leader: input `gone` once tab `f` releases its lock. */
  | ['watch', string]
  /** Follower: the leader is stuck: take its lock. */
  | ['steal']
  /** Leader: a newer leader took my lock: stop my engine, give up the lock, follow. */
  | ['yield']
  /** This tab's channels cannot be shared: connect alone. */
  | ['solo'];

/** Heartbeats in a row the leader may leave unanswered before a follower takes over. */
export const MISSES = 2;

/** A tab that has told its facade `connecting` (the edge does, on start). */
export const tab = (id: string, pos: Chans): Tab => ({ id, pos, ok: {}, st: ['connecting', null], shown: 'connectingnull', miss: 0, n: 0 });

const isDelivery = (e: Relay) => e.type === 'event' || e.type === 'reset';

/** One step: the new state and what the edge must do, in order. Never mutates `s0`. */
export function next(s0: Tab, i: Input): { state: Tab; effects: Effect[] } {
  // A stepped-down leader's late word. (Only a leader's messages have a term.)
  if (i.n! < s0.n) return { state: s0, effects: [] };
  const s = structuredClone(s0);
  const fx: Effect[] = [];
  if (i.n) {
    s.n = i.n;
    s.miss = 0;
    // A newer leader speaks: my lock was taken while I was stuck; I follow before I hear of it.
    if (i.n > s.lead?.n!) (s.lead = undefined), fx.push(['yield']);
  }
  const { pos, ok, id, lead: L } = s;
  const post = (m: Msg) => fx.push(['post', m]);
  const join = () => post({ k: 'j', f: id, c: s.pos });
  /** Leader: the channels live now, at their cursors, and the engine's state. */
  const live = () => {
    const c: Chans = {};
    for (const x in L!.at) if (!(x in L!.end) && L!.at[x]) c[x] = L!.at[x];
    post({ k: 'v', n: L!.n, c, s: s.st });
  };
  /** Leader: the channel's replay is over: say so. */
  const goLive = (c: string) => {
    delete L!.end[c];
    live();
  };
  /** Leader: carry the union the tabs want; a new channel starts where the first tab that wants it says. */
  const sync = () => {
    const at = L!.at;
    const want: Chans = {};
    const arg: Chans = {};
    let add = 0;
    for (const f in L!.tabs)
      for (const c in L!.tabs[f])
        if (!(c in want))
          if (at && c in at) (want[c] = at[c]!), (arg[c] = null);
          else (want[c] = arg[c] = L!.tabs[f]![c]!), (L!.end[c] = ''), add++;
    for (const c in at) if (!(c in want)) delete L!.end[c], add++;
    if (at && !add) return;
    L!.at = want;
    fx.push(['chans', arg]);
  };

  switch (i.k) {
    case 'lead':
      s.n = Math.max(i.now, s.n + 1);
      s.st = ['connecting', null];
      s.lead = { n: s.n, tabs: {}, at: null, end: {} };
      post({ k: 'q', n: s.n });
      break;
    case 'go':
      if (L && !L.at) sync();
      break;
    case 'step':
      s.lead = undefined;
      break;
    case 'tick':
      // The leader's beat: a state that a stepped-down leader's late messages garbled heals at the next tick.
      if (L) live();
      else if (s.miss < MISSES) s.miss++, join();
      else (s.miss = 0), fx.push(['steal']);
      break;
    case 'chans':
      s.pos = {};
      for (const c in i.c) {
        s.pos[c] = i.c[c] ?? pos[c] ?? null;
        // A cursor given now must be checked against the stream again.
        if (i.c[c]) delete ok[c];
      }
      join();
      break;
    case 'gone':
      if (L?.tabs[i.f]) delete L.tabs[i.f], L.at && sync();
      break;
    case 'deny':
      if (!L) break;
      post({ k: 'd', n: L.n, c: i.c });
      for (const f in L.tabs) if (i.c.some((c) => c in L.tabs[f]!)) delete L.tabs[f];
      sync();
      break;
    case 'eng': {
      const e = i.e;
      const at = L?.at;
      if (!at) break;
      const c = e.channel!;
      if (e.type === 'stream') {
        for (const x in e.to)
          if (x in at) {
            at[x] ??= e.to[x]!;
            if (at[x] === e.to[x]) goLive(x);
            else L.end[x] = e.to[x]!;
          }
      } else if (e.type !== 'heads') {
        if (e.type === 'state') s.st = [e.state!, e.transport!];
        // One tab shows the notification: the first that has the channel.
        post({ k: 'e', n: L.n, e, p: at[c], w: Object.keys(L.tabs).find((f) => c in L.tabs[f]!) });
        if (isDelivery(e) && c in at) {
          at[c] = e.cursor!;
          if (e.type === 'reset' || L.end[c] === e.cursor) goLive(c);
        }
      }
      break;
    }
    case 'j':
      if (!L) break;
      if (!L.tabs[i.f] && i.f !== id) fx.push(['watch', i.f]);
      L.tabs[i.f] = i.c;
      if (L.at) sync();
      live();
      break;
    case 'g':
      // Restart the channel from the tab's cursor, unless the stream is there right now: then saying so is enough.
      if (!L?.at || !(i.c in L.at)) break;
      if (L.at[i.c] === i.x) live();
      else {
        L.at[i.c] = i.x;
        L.end[i.c] = '';
        const arg: Chans = {};
        for (const c in L.at) arg[c] = null;
        fx.push(['chans', { ...arg, [i.c]: i.x }]);
      }
      break;
    case 'r':
      if (L) fx.push(['reconnect']);
      break;
    case 'q':
      join();
      break;
    case 'v':
      s.st = i.s;
      for (const c in i.c) {
        if (!(c in pos)) continue;
        const y = i.c[c]!;
        if (!pos[c]) fx.push(['emit', { type: 'heads', cursors: { [c]: (pos[c] = y) } }]);
        if (pos[c] === y) ok[c] = 1;
        // Live elsewhere than my cursor: I am behind (or my cursor is not of this stream). Asked again
        // at each such answer: another tab's restart may have overtaken mine.
        else (ok[c] = 0), post({ k: 'g', c, x: pos[c]! });
      }
      break;
    case 'd':
      if (i.c.some((c) => c in pos)) fx.push(['solo']);
      break;
    case 'e': {
      const e = i.e;
      const c = e.channel!;
      if (!isDelivery(e)) e.type === 'state' ? (s.st = [e.state!, e.transport!]) : fx.push(['emit', e]);
      // Mine, and right after my cursor: new to this tab, and in order.
      else if (c in pos && pos[c] && i.p === pos[c]) fx.push(['emit', { ...e, first: i.w === id }]), (pos[c] = e.cursor!), (ok[c] = 1);
    }
  }

  // What the facade sees: the shared state, but `connecting` until every channel of this tab is in step.
  const inStep = Object.keys(s.pos).every((c) => s.ok[c]);
  const [st, tr] = (s.st[0] === 'open' || s.st[0] === 'polling') && !inStep ? (['connecting', null] as const) : s.st;
  if (st + tr !== s0.shown) (s.shown = st + tr), fx.push(['emit', { type: 'state', state: st, transport: tr }]);
  return { state: s, effects: fx };
}
