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
  | { t: 'j'; f: string; c: Chans }
  /** tab: the shared stream of `c` is not at my cursor: restart it from `x`. */
  | { t: 'g'; c: string; x: string }
  /** tab: reconnect() */
  | { t: 'r' }
  /** leader: I lead now: report (j). */
  | { t: 'q' }
  /** leader: what my engine emitted; an event or reset follows cursor `p`; `w`: the tab whose copy is `first`. */
  | { t: 'e'; e: Relay; p?: string | null; w?: string | undefined }
  /** leader: these channels are live (replay over) at these cursors; my engine's state. The answer to `j`. */
  | { t: 'v'; c: Chans; s: [State, Transport | null] }
  /** leader: my token does not grant these channels. */
  | { t: 'd'; c: string[] };

export interface Lead {
  /** Every tab (this one too) → its channels, with the cursor it reported. */
  tabs: Record<string, Chans>;
  /** The engine's channels → its cursor, as it emitted them (null: no head yet); null before it starts. */
  at: Chans | null;
  /** Channels whose replay is not over → its last cursor ('' while unknown). */
  end: Record<string, string>;
  /** The engine's state. */
  st: [State, Transport | null];
}

export interface Tab {
  id: string;
  /** My channels → my cursor. */
  pos: Chans;
  /** My channels known to be in step with the shared stream (1), or waiting for a restart (0). */
  ok: Record<string, number>;
  /** The leader engine's state. */
  st: [State, Transport | null];
  /** What the facade was last told (state + transport). */
  shown: string;
  /** Heartbeats the leader left unanswered. */
  miss: number;
  lead?: Lead | undefined;
}

export type Input =
  /** A message from another tab, or one of ours looped back. */
  | { k: 'msg'; m: Msg }
  /** The leader's engine emitted. */
  | { k: 'eng'; e: Relay }
  /** This tab got the leader lock. */
  | { k: 'lead' }
  /** Leader: the first reports are in: start the engine. */
  | { k: 'go' }
  /** Stop leading (closed, frozen, lock stolen). */
  | { k: 'step' }
  /** Heartbeat timer. */
  | { k: 'tick' }
  /** Back from a freeze: messages may have been missed: find out where the stream is again. */
  | { k: 'wake' }
  /** Tab `f` is gone (its lock was released). */
  | { k: 'gone'; f: string }
  /** Leader: the union token does not grant these channels. */
  | { k: 'deny'; c: string[] }
  /** This tab's channel set changed (cursor: start there; null: keep mine, else from now on). */
  | { k: 'chans'; c: Chans };

export type Effect =
  | ['post', Msg]
  | ['emit', Relay]
  /** Leader: start an engine from these cursors. */
  | ['start', Chans]
  /** Leader: engine.channels(). */
  | ['chans', Chans]
  | ['reconnect']
  /** Leader: input `gone` once tab `f` releases its lock. */
  | ['watch', string]
  /** Follower: the leader is stuck: take its lock. */
  | ['steal']
  /** This tab's channels cannot be shared: connect alone. */
  | ['solo'];

/** Heartbeats in a row the leader may leave unanswered before a follower takes over. */
export const MISSES = 2;

/** A tab that has told its facade `connecting` (the edge does, on start). */
export const tab = (id: string, pos: Chans): Tab => ({ id, pos, ok: {}, st: ['connecting', null], shown: 'connectingnull', miss: 0 });

const isDelivery = (e: Relay) => e.type === 'event' || e.type === 'reset';

/** One step: the new state and what the edge must do, in order. Never mutates `s0`. */
export function next(s0: Tab, i: Input): { state: Tab; effects: Effect[] } {
  const s = structuredClone(s0);
  const { pos, ok, id } = s;
  const L = s.lead;
  const fx: Effect[] = [];
  const post = (m: Msg) => fx.push(['post', m]);
  const join = () => post({ t: 'j', f: id, c: pos });
  /** Leader: the channels live now (or just `only`), at their cursors. */
  const live = (only?: string) => {
    const c: Chans = {};
    for (const x in L!.at) if (!(x in L!.end) && L!.at[x] && (!only || x === only)) c[x] = L!.at[x];
    post({ t: 'v', c, s: L!.st });
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
    for (const c in at) if (!(c in want)) delete L!.end[c];
    if (at && !add && Object.keys(at).length === Object.keys(want).length) return;
    L!.at = want;
    fx.push([at ? 'chans' : 'start', arg]);
  };
  const goLive = (c: string) => {
    delete L!.end[c];
    live(c);
  };

  switch (i.k) {
    case 'lead':
      s.lead = { tabs: {}, at: null, end: {}, st: ['connecting', null] };
      post({ t: 'q' });
      break;
    case 'go':
      if (L && !L.at) sync();
      break;
    case 'step':
      s.lead = undefined;
      break;
    case 'tick':
      // The leader's beat: a state that a stepped-down leader's late messages garbled heals at the next tick.
      if (L) {
        live();
        break;
      }
      if (s.miss < MISSES) s.miss++, join();
      else (s.miss = 0), fx.push(['steal']);
      break;
    case 'wake':
      s.ok = {};
      join();
      break;
    case 'chans':
      s.pos = {};
      for (const c in i.c) {
        s.pos[c] = i.c[c] ?? pos[c] ?? null;
        // A cursor given now must be checked against the stream again.
        if (i.c[c]) delete ok[c];
      }
      post({ t: 'j', f: id, c: s.pos });
      break;
    case 'gone':
      if (L?.tabs[i.f]) delete L.tabs[i.f], L.at && sync();
      break;
    case 'deny':
      if (!L) break;
      post({ t: 'd', c: i.c });
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
        if (e.type === 'state') L.st = [e.state!, e.transport!];
        // One tab shows the notification: the first that has the channel.
        post({ t: 'e', e, p: at[c], w: isDelivery(e) ? Object.keys(L.tabs).find((f) => c in L.tabs[f]!) : undefined });
        if (isDelivery(e) && c in at) {
          at[c] = e.cursor!;
          if (e.type === 'reset' || L.end[c] === e.cursor) goLive(c);
        }
      }
      break;
    }
    case 'msg': {
      const m = i.m;
      if (m.t !== 'j' && m.t !== 'g' && m.t !== 'r') s.miss = 0;
      if (m.t === 'j') {
        if (!L) break;
        if (!L.tabs[m.f] && m.f !== id) fx.push(['watch', m.f]);
        L.tabs[m.f] = m.c;
        if (L.at) sync();
        live();
      } else if (m.t === 'g') {
        // Restart the channel from the tab's cursor, unless the stream is there right now: then saying so is enough.
        if (!L?.at || !(m.c in L.at)) break;
        if (L.at[m.c] === m.x) live(m.c);
        else {
          L.at[m.c] = m.x;
          L.end[m.c] = '';
          const arg: Chans = {};
          for (const c in L.at) arg[c] = null;
          fx.push(['chans', { ...arg, [m.c]: m.x }]);
        }
      } else if (m.t === 'r') {
        if (L) fx.push(['reconnect']);
      } else if (m.t === 'q') join();
      else if (m.t === 'v') {
        s.st = m.s;
        for (const c in m.c) {
          if (!(c in pos)) continue;
          const y = m.c[c]!;
          if (!pos[c]) fx.push(['emit', { type: 'heads', cursors: { [c]: (pos[c] = y) } }]);
          if (pos[c] === y) ok[c] = 1;
          // Live elsewhere than my cursor: I am behind (or my cursor is not of this stream). Asked again
          // at each such answer: another tab's restart may have overtaken mine.
          else (ok[c] = 0), post({ t: 'g', c, x: pos[c]! });
        }
      } else if (m.t === 'd') {
        if (m.c.some((c) => c in pos)) fx.push(['solo']);
      } else {
        const e = m.e;
        const c = e.channel!;
        if (!isDelivery(e)) e.type === 'state' ? (s.st = [e.state!, e.transport!]) : fx.push(['emit', e]);
        // Mine, and right after my cursor: new to this tab, and in order.
        else if (c in pos && pos[c] && m.p === pos[c]) fx.push(['emit', { ...e, first: m.w === id }]), (pos[c] = e.cursor!), (ok[c] = 1);
      }
      break;
    }
  }

  // What the facade sees: the shared state, but `connecting` until every channel of this tab is in step.
  const inStep = Object.keys(s.pos).every((c) => s.ok[c]);
  const [st, tr] = (s.st[0] === 'open' || s.st[0] === 'polling') && !inStep ? (['connecting', null] as const) : s.st;
  if (st + tr !== s0.shown) (s.shown = st + tr), fx.push(['emit', { type: 'state', state: st, transport: tr }]);
  return { state: s, effects: fx };
}
