/**
 * Cross-tab sharing, the pure part: one state machine per tab, for both roles.
 *
 * Every tab runs the *tab* half: it keeps its own cursor per channel (`pos`)
 * and where the leader's stream of that channel is (`sp`), and passes on an
 * event only while the two agree, the way the engine filters its own streams
 * (src/cursors.ts). The leader also runs the *leader* half: it carries the
 * union of every tab's channels on its engine and relays what the engine
 * emits. The leader's own tab receives its own messages (the edge loops every
 * post back), so it is a tab like the others.
 *
 * Why positions and not a replay buffer: the leader never resends from
 * memory. When a tab's cursor is not where the shared stream is (a new tab
 * with cursors, a lagging tab after a takeover, a tab back from a freeze), the
 * tab asks the leader to restart that channel from its own cursor (`g`); the
 * server replays, the asking tab is then in step, and every other tab skips
 * the replayed events until the stream reaches its own cursor again. A tab
 * learns it is behind when the leader says the channel is live (`v`: its
 * replay is over) at a cursor that is not the tab's.
 *
 * Cursors are opaque: nothing here orders them, it only compares them.
 */
import type { State, Transport } from '../types.js';

/** Channel → cursor (undefined: none yet). */
export type Pos = Record<string, string | undefined>;
/** Channel → cursor to start from (null: from now on). */
export type Chans = Record<string, string | null>;

/** What an engine emits (src/engine.ts EngineEvent), plus where a stream's replay ends. */
export type Relay =
  | { type: 'event'; channel: string; cursor: string; data: unknown }
  | { type: 'reset'; channel: string; cursor: string }
  | { type: 'state'; state: State; transport: Transport | null }
  /** A stream (a welcome, a poll answer) begins; its replay of each channel ends at `to` (PROTOCOL.md welcome heads, poll ETag). */
  | { type: 'stream'; to: Record<string, string> }
  | { type: 'heads'; cursors: Record<string, string> }
  | { type: string; [k: string]: unknown };

type Delivery = { type: 'event' | 'reset'; channel: string; cursor: string };
const isDelivery = (e: Relay): e is Delivery => e.type === 'event' || e.type === 'reset';

/**
 * Messages between tabs, on one BroadcastChannel per server URL and user.
 * Short keys on purpose: every tab receives all of them. The protocol version
 * is in the channel's name, so builds that disagree never hear each other.
 */
export type Msg =
  /** tab: carry my channels (a cursor says where to start one you do not carry yet). Also the heartbeat. */
  | { t: 'j'; f: string; c: Chans }
  /** tab: the shared stream of `c` is past my cursor: restart it from `x`. */
  | { t: 'g'; c: string; x: string }
  /** tab: reconnect() */
  | { t: 'r' }
  /** leader `L`: I lead now; report (j). */
  | { t: 'q'; n: number }
  /** leader: what my engine emitted. */
  | { t: 'e'; n: number; e: Relay }
  /** leader: these channels restart after these cursors. */
  | { t: 'f'; n: number; c: Pos }
  /** leader: these channels are live (replay over) at these cursors; and my engine's state. The reply to `j`. */
  | { t: 'v'; n: number; c: Record<string, string>; s: [State, Transport | null] }
  /** leader: my token does not grant these channels. */
  | { t: 'n'; n: number; c: string[] };

export interface Lead {
  /** My term. */
  n: number;
  /** Every tab (this one too) → the channels it wants, with the cursor it reported. */
  tabs: Record<string, Chans>;
  /** Channels the union token grants. */
  ok: string[];
  /** A union token is being fetched. */
  chk?: boolean;
  /** The engine's channels → its cursor, as emitted (undefined: from now on, no head yet). Null before the engine starts. */
  at: Pos | null;
  /** Channels whose replay is over → the end cursor still to reach (absent: live). */
  end: Record<string, string>;
  /** The engine's state. */
  st: [State, Transport | null];
}

export interface Tab {
  id: string;
  /**
   * The term of the leader this tab listens to. A leader's term is the time it
   * got the lock: the lock orders leaders in time, while messages of a leader
   * that just stepped down may still arrive after its successor's.
   */
  n: number;
  /** My channels → my cursor. */
  pos: Pos;
  /** My channels → the shared stream's position (undefined: not known yet; '': I asked for a restart). */
  sp: Pos;
  /** The leader's engine state. */
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
  /** This tab got the leader lock, at time `n` (unique: a high-resolution time plus a random fraction). */
  | { k: 'lead'; n: number }
  /** Stop leading (closed, frozen, lock stolen). */
  | { k: 'step' }
  /** Heartbeat timer. */
  | { k: 'tick' }
  /** Tab `f` is gone (its lock was released). */
  | { k: 'gone'; f: string }
  /** The union token asked for `asked` grants `ch`. */
  | { k: 'ok'; asked: string[]; ch: string[] }
  /** This tab's channel set changed (cursor: start there; null: keep mine, else from now on). */
  | { k: 'chans'; c: Chans };

export type Effect =
  | ['post', Msg]
  | ['emit', Relay]
  /** Leader: start an engine from these cursors. */
  | ['start', Pos]
  /** Leader: engine.channels(). */
  | ['chans', Chans]
  | ['reconnect']
  /** Leader: fetch a union token for these channels, then input `ok`. */
  | ['check', string[]]
  /** Leader: input `gone` once tab `f` releases its lock. */
  | ['watch', string]
  /** Follower: the leader is stuck: take its lock. */
  | ['steal']
  /** This tab's channels cannot be shared: connect alone. */
  | ['solo'];

/** Heartbeats in a row the leader may leave unanswered before a follower takes over. */
export const MISSES = 2;

export const tab = (id: string, c: Chans): Tab => ({ id, n: 0, pos: fromChans(c), sp: {}, st: ['connecting', null], shown: '', miss: 0 });

const fromChans = (c: Chans, pos: Pos = {}): Pos => {
  const p: Pos = {};
  for (const ch in c) p[ch] = c[ch] ?? pos[ch];
  return p;
};
const live = (s: State) => s === 'open' || s === 'polling';

/** One step: the new state and what the edge must do, in order. Never mutates `s`. */
export function next(s0: Tab, i: Input): { state: Tab; effects: Effect[] } {
  const s: Tab = { ...s0, pos: { ...s0.pos }, sp: { ...s0.sp } };
  const L = s0.lead && { ...s0.lead, tabs: { ...s0.lead.tabs }, end: { ...s0.lead.end }, at: s0.lead.at && { ...s0.lead.at } };
  s.lead = L;
  const fx: Effect[] = [];
  const post = (m: Msg) => fx.push(['post', m]);
  const { pos, id } = s;
  let { sp } = s;
  const join = () => post({ t: 'j', f: id, c: chans(pos) });

  /** Leader: the live channels' cursors, and the engine state: the answer to every `j`. */
  const beat = () => {
    const c: Record<string, string> = {};
    for (const ch in L!.at) if (!(ch in L!.end) && L!.at[ch] !== undefined) c[ch] = L!.at[ch]!;
    post({ t: 'v', n: L!.n, c, s: L!.st });
  };
  /** Leader: the union the tabs want, checked against the token first. */
  const sync = () => {
    const want = union(L!.tabs);
    if (want.some((c) => !L!.ok.includes(c))) return check(want);
    const cur = L!.at;
    const start: Pos = {};
    const next: Chans = {};
    const at: Pos = {};
    let changed = !cur;
    for (const c of want) {
      if (cur && c in cur) (next[c] = null), (at[c] = cur[c]);
      else {
        // A new channel starts where the first tab that wants it says; not live before its stream says so.
        at[c] = start[c] = firstCursor(L!.tabs, c);
        next[c] = at[c] ?? null;
        L!.end[c] = '';
        changed = true;
      }
    }
    for (const c in cur) if (!(c in at)) delete L!.end[c], (changed = true);
    if (!changed) return;
    L!.at = at;
    if (Object.keys(start).length) post({ t: 'f', n: L!.n, c: start });
    fx.push(cur ? ['chans', next] : ['start', start]);
  };
  const check = (want: string[]) => {
    if (!L!.chk) fx.push(['check', want]), (L!.chk = true);
  };

  switch (i.k) {
    case 'lead':
      s.lead = { n: i.n, tabs: {}, ok: [], at: null, end: {}, st: ['connecting', null] };
      post({ t: 'q', n: i.n });
      break;
    case 'step':
      s.lead = undefined;
      s.sp = {};
      break;
    case 'tick':
      if (L) break;
      if (s.miss >= MISSES) {
        s.miss = 0;
        fx.push(['steal']);
      } else s.miss++, join();
      break;
    case 'chans':
      s.pos = fromChans(i.c, pos);
      // A cursor given now must be checked against the stream again.
      for (const c in i.c) if (i.c[c] !== null) delete sp[c];
      s.sp = pick(sp, s.pos);
      post({ t: 'j', f: id, c: chans(s.pos) });
      break;
    case 'gone':
      if (L && L.tabs[i.f]) delete L.tabs[i.f], L.at && sync();
      break;
    case 'ok':
      if (!L) break;
      L.ok = i.ch;
      L.chk = false;
      {
        const no = i.asked.filter((c) => !i.ch.includes(c));
        if (no.length) {
          post({ t: 'n', n: L!.n, c: no });
          for (const f in L.tabs) if (Object.keys(L.tabs[f]!).some((c) => no.includes(c))) delete L.tabs[f];
        }
      }
      sync();
      break;
    case 'eng': {
      if (!L) break;
      const e = i.e;
      const at = L.at!;
      if (e.type === 'stream') {
        const to = e.to as Record<string, string>;
        for (const c in to) {
          if (!(c in at)) continue;
          if (at[c] === undefined) at[c] = to[c];
          if (at[c] === to[c]) goLive(c);
          else L.end[c] = to[c]!;
        }
        break;
      }
      if (e.type === 'heads') break; // `stream` carries the heads (and more)
      if (e.type === 'state') L.st = [e.state as State, e.transport as Transport | null];
      post({ t: 'e', n: L!.n, e });
      if (isDelivery(e) && e.channel in at) {
        at[e.channel] = e.cursor;
        if (e.type === 'reset' || L.end[e.channel] === e.cursor) goLive(e.channel);
      }
      break;
    }
    case 'msg': {
      const m = i.m;
      if ('f' in m && m.t === 'j') {
        if (!L) break;
        if (!L.tabs[m.f] && m.f !== id) fx.push(['watch', m.f]);
        L.tabs[m.f] = m.c;
        if (L.at) sync();
        else check(union(L.tabs));
        beat();
        break;
      }
      if (m.t === 'g') {
        // Restart the channel from the tab's cursor, unless the stream is there right now: then saying so is enough.
        if (L?.at && m.c in L.at) {
          post({ t: 'f', n: L!.n, c: { [m.c]: m.x } });
          if (L.at[m.c] !== m.x) {
            L.at[m.c] = m.x;
            L.end[m.c] = '';
            fx.push(['chans', { ...nulls(L.at), [m.c]: m.x }]);
          }
        }
        break;
      }
      if (m.t === 'r') {
        if (L) fx.push(['reconnect']);
        break;
      }
      // From a leader. A newer one: where its stream is, is unknown until it says; report to it.
      if (m.n > s.n) {
        s.n = m.n;
        s.sp = sp = {};
        join();
      }
      if (m.n !== s.n) break;
      s.miss = 0;
      if (m.t === 'f') {
        for (const c in m.c) if (c in pos) sp[c] = m.c[c];
      } else if (m.t === 'v') {
        s.st = m.s;
        for (const c in m.c) {
          if (!(c in pos)) continue;
          const y = m.c[c]!;
          if (pos[c] === undefined) {
            pos[c] = y;
            fx.push(['emit', { type: 'heads', cursors: { [c]: y } }]);
          }
          if (pos[c] === y) sp[c] = y;
          else if (sp[c] !== '') {
            // Live elsewhere than my cursor: I am behind (or my cursor is foreign to this stream).
            sp[c] = '';
            post({ t: 'g', c, x: pos[c]! });
          }
        }
      } else if (m.t === 'n') {
        if (m.c.some((c) => c in pos)) fx.push(['solo']);
      } else if (m.t === 'e') {
        const e = m.e;
        if (isDelivery(e)) {
          const c = e.channel;
          if (!(c in pos)) break;
          const fresh = sp[c] !== undefined && sp[c] === pos[c];
          if (sp[c]) sp[c] = e.cursor;
          if (fresh) {
            pos[c] = e.cursor;
            fx.push(['emit', e]);
          }
        } else if (e.type === 'state') s.st = [e.state as State, e.transport as Transport | null];
        else fx.push(['emit', e]);
      }
      break;
    }
  }

  function goLive(c: string) {
    delete L!.end[c];
    if (L!.at![c] !== undefined) post({ t: 'v', n: L!.n, c: { [c]: L!.at![c]! }, s: L!.st });
  }

  // What the facade sees: the shared state, but `connecting` until every channel of this tab is in step.
  const positioned = Object.keys(s.pos).every((c) => s.sp[c] !== undefined && s.sp[c] === s.pos[c]);
  const [st, tr] = live(s.st[0]) && !positioned ? (['connecting', null] as const) : s.st;
  const shown = st + tr;
  if (shown !== s0.shown) {
    s.shown = shown;
    fx.push(['emit', { type: 'state', state: st, transport: tr }]);
  }
  return { state: s, effects: fx };
}

/** The channels a tab reports: its cursors, null where it has none. */
const chans = (pos: Pos): Chans => Object.fromEntries(Object.keys(pos).map((c) => [c, pos[c] ?? null]));
const nulls = (p: Pos): Chans => Object.fromEntries(Object.keys(p).map((c) => [c, null]));
const pick = (p: Pos, keys: Pos): Pos => Object.fromEntries(Object.keys(keys).filter((c) => c in p).map((c) => [c, p[c]]));
const union = (tabs: Record<string, Chans>): string[] => [...new Set(Object.values(tabs).flatMap(Object.keys))].sort();
const firstCursor = (tabs: Record<string, Chans>, c: string): string | undefined => {
  for (const f in tabs) if (tabs[f]![c]) return tabs[f]![c]!;
};
