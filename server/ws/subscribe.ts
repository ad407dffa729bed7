// hello -> welcome -> replay -> live (PROTOCOL.md "Conversation after 101",
// steps 1-3), with no event skipped or duplicated between replay and live.
import { eventMessage, resetMessage } from '../pubsub/hub.js';
import type { Replay } from '../pubsub/bus.js';
import { CURSOR_RE } from '../pubsub/cursor.js';
import { TokenError, verifySubscriberToken } from '../auth/tokens.js';
import { subscriberKeyring } from '../config.js';
import { claimedSub, sampled } from '../ops-log.js';
import { encodeText } from './frame.js';
import { parseHello, welcomeMessage } from './hello.js';
import { admitReplay, replayBytes } from './replay-budget.js';
import { S_OPEN, S_SUBSCRIBING, closeConnection, overOutboundLimit, send, setState, type Connection } from './connection.js';

const EMPTY = Buffer.alloc(0);

export async function hello(c: Connection, msg: unknown): Promise<void> {
  const rt = c.rt;
  const config = rt.config;
  const h = parseHello(msg, config.maxChannels);
  if (!h.ok) return closeConnection(c, 4400, h.reason);
  if (typeof h.token !== 'string' || h.token === '') {
    return closeConnection(c, 4401, h.token === undefined || h.token === '' ? 'token missing' : 'token invalid');
  }
  let granted: string[];
  try {
    // Not remembered: a socket sends its token once (the cache is for pollers, see verifySubscriberToken).
    granted = (await verifySubscriberToken(subscriberKeyring(config), h.token, undefined, false)).ch;
  } catch (err) {
    if (err instanceof TokenError) {
      sampled(rt.ctx.log, 'auth_failed', { transport: 'websocket', reason: err.code, sub: claimedSub(h.token), ip: c.socket.remoteAddress }, 'subscriber token refused (4401)');
      return closeConnection(c, 4401, 'token ' + err.code);
    }
    rt.ctx.log.error({ err }, 'token verification failed');
    return closeConnection(c, 1011, 'internal error');
  }
  if (c.state !== S_SUBSCRIBING) return; // closed while we verified
  const names = h.names;
  for (const name of names) {
    if (!granted.includes(name)) return closeConnection(c, 4403, 'channel not granted: ' + name);
  }

  // Subscribe BEFORE reading heads and history: an event published from now on
  // is either in what we read or queued in `pending` (or both; deduped below).
  c.pending = [0];
  c.channels = names.length === 1 ? names[0]! : names;
  for (const name of names) rt.hub.subscribe(name, c);

  let heads: string[];
  let replays: (Replay | null)[];
  const bus = rt.ctx.bus;
  try {
    [heads, replays] = await Promise.all([
      Promise.all(names.map((n) => bus.head(n))),
      Promise.all(h.cursors.map((cur, i) => (cur !== null && CURSOR_RE.test(cur) ? bus.readAfter(names[i]!, cur) : null))),
    ]);
    // A malformed cursor: reset with the head ("No silent loss").
    for (let i = 0; i < names.length; i++) {
      const cur = h.cursors[i] ?? null;
      if (cur !== null && !CURSOR_RE.test(cur)) replays[i] = { kind: 'reset', head: heads[i]! };
    }
  } catch (err) {
    if (c.state !== S_SUBSCRIBING) return;
    rt.ctx.metrics.busErrors.inc({ op: 'subscribe' });
    rt.ctx.log.debug({ err: (err as Error).message }, 'bus failed during subscribe');
    return closeConnection(c, 1011, 'bus unavailable');
  }
  if (c.state !== S_SUBSCRIBING) return; // closed while we read

  const held = replayBytes(replays);
  if (!admitReplay(rt.replayBytes, held, config.maxReplayBytes)) {
    rt.ctx.metrics.replaysRefused.inc();
    return closeConnection(c, 1013, 'replay capacity reached; retry later');
  }
  rt.replayBytes += held;

  // Welcome, replay, then the queued live events. A replay may be far larger
  // than the outbound limit: before a write that would pass it, we wait for the
  // queue to flush, so a long replay flows at the client's pace and only a
  // client that stops reading is closed 1013 (by the hello deadline, or by the
  // backlog of live events in `pending`, which is bounded too).
  const socket = c.socket;
  let messages = 0;
  let bytes = 0;
  const out = async (frame: Buffer): Promise<boolean> => {
    // The replay window, not the outbound limit: an unread replay pins at most this much here.
    if (socket.writableLength > 0 && overOutboundLimit(socket.writableLength, frame.length, Math.min(config.replayWindowBytes, config.maxOutboundBytes))) {
      // Would pass the limit: first let the kernel take what is queued (the
      // callback of an empty write runs once everything before it is flushed).
      await new Promise<void>((resolve) => socket.write(EMPTY, () => resolve()));
      if (c.state !== S_SUBSCRIBING) return false;
    }
    if (!send(c, frame)) return false;
    messages++;
    bytes += frame.length;
    return c.state === S_SUBSCRIBING;
  };
  try {
    if (!(await out(encodeText(welcomeMessage(config.pingMs, names, heads))))) return;
    // last[i]: the newest cursor the client will hold for channel i once the replay is written.
    const last: string[] = new Array(names.length);
    for (let i = 0; i < names.length; i++) {
      const r = replays[i];
      if (r === null || r === undefined) { last[i] = heads[i]!; continue; }
      if (r.kind === 'reset') {
        if (!(await out(encodeText(resetMessage(names[i]!, r.head))))) return;
        last[i] = r.head;
        continue;
      }
      last[i] = h.cursors[i]!;
      for (const e of r.events) {
        if (!(await out(encodeText(eventMessage(e))))) return;
        last[i] = e.cursor;
      }
    }
    // Before going live, everything up to what the client now holds must have
    // reached this connection's pending queue (where it is deduped), not be on
    // its way: the bus's live feed must have passed it (Redis reads and live
    // delivery use different connections), and the hub must have written out
    // what it had queued (a large fan-out runs in slices).
    if (!(await caughtUp(c, names, last))) return;
    // Live events that arrived meanwhile: only those after what the client now
    // holds. Events queued while this loop waits for 'drain' are picked up too.
    for (let k = 1; c.pending !== null && k < c.pending.length; k += 3) {
      const p = c.pending;
      const channel = p[k] as string;
      const cursor = p[k + 1] as string | null;
      const frame = p[k + 2] as Buffer;
      p[0] = (p[0] as number) - frame.length; // no longer a backlog once handled
      const i = names.indexOf(channel);
      if (cursor !== null) {
        if (!bus.isAfter(cursor, last[i]!)) continue;
        last[i] = cursor;
      }
      if (!(await out(frame))) return;
    }
    c.pending = null;
  } finally {
    rt.replayBytes -= held;
    rt.ctx.metrics.messagesOut.inc(messages);
    rt.ctx.metrics.bytesOut.inc(bytes);
  }
  if (c.state !== S_SUBSCRIBING) return;
  setState(c, S_OPEN);
  rt.wheel.schedule(c, rt.now() + config.pingMs);
}

/** Wait for the bus's live feed and the hub to catch up with `last` (see hello); false if the connection left meanwhile. */
async function caughtUp(c: Connection, names: readonly string[], last: readonly string[]): Promise<boolean> {
  const { bus } = c.rt.ctx;
  if (bus.settled !== undefined) {
    const waits: Promise<void>[] = [];
    for (let i = 0; i < names.length; i++) {
      const p = bus.settled(names[i]!, last[i]!);
      if (p !== null) waits.push(p);
    }
    if (waits.length > 0) await Promise.all(waits);
  }
  const flushed = c.rt.hub.flushed();
  if (flushed !== null) await flushed;
  return c.state === S_SUBSCRIBING;
}
