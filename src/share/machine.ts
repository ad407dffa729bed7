/**
 * Cross-tab sharing, the pure part: one state machine per tab, for both roles.
 *
 * The leader runs the one engine, for the union of every tab's channels, and
 * relays each event with where the engine was before it (`c`: its cursor per
 * channel). Every tab keeps its own cursor per channel (`pos`) and takes an
 * event only if it follows that cursor: so each tab gets each event once and
 * in order, whichever leader relays it, and skips a replay until the replay
 * reaches its own cursor. The leader's own tab hears its own
 * messages (the edge loops every post back): it is a tab like the others.
 *
 * The leader keeps no replay buffer. When a tab's cursor is not where the
 * shared stream is (a new tab with cursors, a lagging tab after a takeover, a
 * tab back from a freeze), the tab asks the leader to restart that channel
 * from its own cursor (`g`); the server replays, and every other tab skips
 * the replayed events it already has. A tab knows it is behind when the
 * leader says the channel is live (`v`: its replay is over) at a cursor that
 * is not the tab's. A restart opens a new leader term: the questions asked
 * before it, of the older term, are ignored, and a tab whose cursor the replay
 * does not pass asks again once the channel is live: restarts never chase
 * each other, and there are at most as many as cursors behind.
 *
 * Cursors are opaque: nothing here orders them, it only compares them.
 */
import type { State, Transport } from '../types.js';

/** Channel → cursor (null, or undefined as the facade passes it: none; to start with: from now on). */
export type Chans = Record<string, string | null>;

/** What an engine emits (src/engine.ts EngineEvent), as it crosses tabs. */
export type Relay = { type: string; channel?: string; cursor?: string; to?: Chans; state?: State; transport?: Transport | null; [k: string]: unknown };

/**
 * Messages between tabs, on one BroadcastChannel per server URL and user.
 * Short keys: every tab receives every message. The protocol version is in
 * the channel's name (src/share/index.ts), so builds that disagree never meet.
 * Every leader message carries the leader's term `n`.
 */
export type Msg =
  /** tab `f`: carry my channels (a cursor: where to start one you do not carry yet). Also the heartbeat. */
  | { k: 'j'; f: string; c: Chans; n?: undefined }
  /** tab: the shared stream of `c` (as the leader of term `n` said) is not at my cursor: restart it from `x`. */
  | { k: 'g'; n: number; c: string; x: string }
  /** tab: reconnect() */
  | { k: 'r'; n?: undefined }
  /**
   * leader: my engine's cursors (`c`: Lead.at), its channels still replaying (`e`: Lead.end), its state,
   * and what it emitted since (`x`, not its state; an event or reset follows `c`; `w`: the tab whose copy is
   * `first`). The only leader message but one: the relay, the answer to `j`, the leader's heartbeat, and a
   * new leader's first word (a tab that hears a newer term reports).
   */
  | { k: 'v'; n: number; c: Chans; e: Record<string, string>; s: Tab['st']; x?: Relay | undefined; w?: string | undefined }
  /** leader: my token (the union token) does not grant these channels: the tabs that want them go solo, the leader drops them. */
  | { k: 'd'; n: number; c: string[] };

export interface Lead {
  /** My term (Tab.n may grow past it when a newer leader speaks: then my word is the stale one). */
  n: number;
  /** Every tab (this one too) → its channels, with the cursor it reported. */
  tabs: Record<string, Chans>;
  /** The engine's channels → its cursor, as it emitted them (null: no head yet). */
  at: Chans;
  /** Channels whose replay is not over → its last cursor ('' while unknown). */
  end: Record<string, string>;
}

export interface Tab {
  id: string;
  /** My channels → my cursor. */
  pos: Chans;
  /** All my channels are in step with the shared stream, as the leader last said (1), or not (0). */
  ok?: number;
  /** The shared engine's state (in the leader, its own engine's). */
  st: [State, Transport | null];
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
  /** Stop leading (closed, frozen, lock stolen). */
  | { k: 'step'; n?: undefined }
  /** Heartbeat timer. */
  | { k: 'tick'; n?: undefined }
  /** Tab `f` is gone (its lock was released). */
  | { k: 'gone'; f: string; n?: undefined }
  /** This tab's channel set changed (cursor: start there; null: keep mine, else from now on). */
  | { k: 'chans'; c: Chans; n?: undefined };

export type Effect =
  | ['post', Msg]
  /** To the facade. */
  | ['emit', Relay]
  /** The state the facade shows. */
  | ['show', readonly [State, Transport | null]]
  /** Leader: engine.channels() (a reconnect), and start it (from these cursors if it was not running). */
  | ['chans', Chans]
  /** Leader: input `gone` once tab `f` releases its lock. */
  | ['watch', string]
  /** Follower: the leader is stuck: take its lock. */
  | ['steal', true]
  /** Leader: a newer leader took my lock: stop my engine, give up the lock, follow. */
  | ['yield']
  /** This tab's channels cannot be shared: connect alone. */
  | ['solo'];

/** Heartbeats in a row the leader may leave unanswered before a follower takes over. */
export const MISSES = 2;

export const tab = (id: string, pos: Chans): Tab => ({ id, pos, st: ['connecting', null], miss: 0, n: 0 });

const isDelivery = (e: Relay) => e.type === 'event' || e.type === 'reset';

/** One step: the new state and what the edge must do, in order. Never mutates `s0`. */
export function next(s0: Tab, i: Input): { state: Tab; effects: Effect[] } {
  // A stepped-down leader's late word. (Only a leader's messages have a term.)
  if (i.n! < s0.n) return { state: s0, effects: [] };
  const s = structuredClone(s0);
  const fx: Effect[] = [];
  const { pos, id } = s;
  const post = (m: Msg) => fx.push(['post', m]);
  const join = () => post({ k: 'j', f: id, c: s.pos });
  if (i.n) {
    // A newer leader: report to it. If I led, my lock was taken while I was stuck: I follow before I hear of it.
    if (i.n > s.n) join(), s.lead && ((s.lead = undefined), fx.push(['yield']));
    s.n = i.n;
    s.miss = 0;
  }
  let L = s.lead!;
  /** Leader: where the engine is, its state, and what it emitted. */
  const live = (x?: Relay, w?: string) => post({ k: 'v', n: L.n, c: { ...L.at }, e: { ...L.end }, s: s.st, x, w });
  /** Leader: the engine carries these channels from these cursors; restart it. */
  const restart = (at: Chans) => fx.push(['chans', (L.at = at)]);
  /** Leader: carry the union the tabs want; a new channel starts where the first tab that wants it says. */
  const sync = () => {
    const at = L.at;
    const want: Chans = {};
    for (const f in L.tabs) for (const c in L.tabs[f]) if (!(c in want)) want[c] = c in at ? at[c]! : ((L.end[c] = ''), L.tabs[f]![c]!);
    if (Object.keys(want) + '' != Object.keys(at) + '') restart(want);
  };

  switch (i.k) {
    case 'lead':
      s.n = Math.max(i.now, s.n + 1);
      L = s.lead = { n: s.n, tabs: { [id]: pos }, at: {}, end: {} };
      // The new term: every tab reports. The engine starts at once, for this tab's channels; a report with
      // channels it lacks restarts it (while it still fetches its token, they simply join the hello).
      live();
      sync();
      break;
    case 'step':
      s.lead = undefined;
      break;
    case 'tick':
      // The leader's beat: a state that a stepped-down leader's late messages garbled heals at the next tick.
      if (L) live();
      // (Counting again from a steal: a steal that takes a while to be granted is not asked for at every tick.)
      else if (++s.miss > MISSES) (s.miss = 0), fx.push(['steal', true]);
      else join();
      break;
    case 'chans':
      s.pos = {};
      for (const c in i.c) {
        // A new channel, or a cursor given now, must be checked against the stream again.
        if (!(c in pos) || i.c[c]) s.ok = 0;
        s.pos[c] = i.c[c] ?? pos[c] ?? null;
      }
      join();
      break;
    case 'gone':
      if (L) delete L.tabs[i.f], sync();
      break;
    case 'd':
      if (L) {
        for (const f in L.tabs) if (i.c.some((c) => c in L.tabs[f]!)) delete L.tabs[f];
        sync();
      }
      // Last: going solo leaves the group (and stops the engine this step may have restarted).
      if (i.c.some((c) => c in pos)) fx.push(['solo']);
      break;
    case 'eng': {
      const e = i.e;
      if (!L) break;
      const at = L.at;
      const c = e.channel!;
      if (e.type === 'stream') {
        for (const x in e.to) if (x in at) (at[x] ??= e.to[x]!) === e.to[x] ? delete L.end[x] : (L.end[x] = e.to[x]!);
        live();
      } else if (e.type === 'state') (s.st = [e.state!, e.transport!]), live();
      else if (e.type !== 'heads') {
        // One tab shows the notification: the first that has the channel.
        live(e, Object.keys(L.tabs).find((f) => c in L.tabs[f]!));
        if (isDelivery(e) && c in at) {
          at[c] = e.cursor!;
          if (e.type === 'reset' || L.end[c] === e.cursor) delete L.end[c], live();
        }
      }
      break;
    }
    case 'j':
      if (!L) break;
      if (!L.tabs[i.f]) fx.push(['watch', i.f]);
      L.tabs[i.f] = i.c;
      sync();
      live();
      break;
    case 'g':
      // Restart the channel from the tab's cursor, in a new term: a tab asks at most once per term, and the
      // questions asked before this restart are of an older term, ignored (see the header).
      if (i.c in (L?.at ?? {})) (s.n = ++L.n), (L.end[i.c] = ''), restart({ ...L.at, [i.c]: i.x });
      break;
    case 'r':
      // The engine given the channels it has: it drops its transport and connects again at once.
      if (L) restart(L.at);
      break;
    case 'v': {
      s.st = i.s;
      s.ok = 1;
      for (const c in pos) {
        const y = i.c[c];
        const isLive = y && !(c in i.e);
        // From now on starts where the stream is live (a replay's events are older).
        if (isLive && !pos[c]) fx.push(['emit', { type: 'heads', cursors: { [c]: (pos[c] = y) } }]);
        // In step: my cursor is where the stream is, live or replaying (one engine is open during its replay too).
        // Else not carried yet, or elsewhere: live there, I am behind (or my cursor is not of this stream) and ask
        // for a restart; while it replays, the stream may yet reach my cursor.
        if (!y || y != pos[c]) (s.ok = 0), isLive && post({ k: 'g', n: s.n, c, x: pos[c]! });
      }
      const x = i.x;
      const c = x?.channel!;
      // Mine, and right after my cursor: new to this tab, and in order.
      if (x) isDelivery(x) ? pos[c] && pos[c] === i.c[c] && (fx.push(['emit', { ...x, first: i.w === id }]), (pos[c] = x.cursor!)) : fx.push(['emit', x]);
    }
  }

  // What the facade sees: the shared state, but `connecting` until every channel of this tab is in step.
  // (A transport is named only while `open` or `polling`.)
  fx.push(['show', s.st[1] && !s.ok ? ['connecting', null] : s.st]);
  return { state: s, effects: fx };
}
