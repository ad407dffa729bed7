/**
 * Cursors and duplicate filtering (PROTOCOL.md "Channels, events, cursors").
 *
 * The cursor of a channel is the last event/reset delivered, else a head
 * (welcome, first poll's ETag). Two transports may deliver the same events
 * during a switch (a probe replays from its `hello` cursors while a poll is
 * still answering), and a replay may overlap by any number of events.
 *
 * Cursors are opaque, but each delivery *stream* (one socket, one poll
 * response) carries a channel's events in publish order from the cursor it
 * was started from. So every stream keeps its own position per channel: while
 * it is at the client's cursor, what it sends next is new; while it is behind
 * (another stream moved the cursor on), its messages are ones already
 * delivered, until it sends the client's cursor and is in step again. Memory
 * is one cursor per channel per stream, whatever the overlap (the previous
 * 64-entry window showed 65 overlapping events twice).
 */
import type { ServerMessage } from './messages.js';

export type Pos = Record<string, string | undefined>;
type Delivery = Extract<ServerMessage, { channel: string }>;

export interface Cursors {
  /** Channel → cursor (undefined: from now on). Its keys are the subscribed channels. */
  readonly cur: Pos;
  /** A new stream's starting position: the cursors as they are now. */
  stream(): Pos;
  /** Is `m` new? Moves the cursor and the stream. False for a duplicate or an unknown channel. */
  take(s: Pos, m: Delivery): boolean;
  /** Heads for channels the stream started without a cursor; returns those that became the client's cursor. */
  heads(s: Pos, h: Record<string, string>): Record<string, string>;
}

export function cursorStore(cur: Pos): Cursors {
  return {
    cur,
    stream: () => ({ ...cur }),
    take(s, m) {
      const c = m.channel;
      if (!(c in cur)) return false;
      const fresh = s[c] === cur[c] || (m.type === 'reset' && m.cursor !== cur[c]);
      s[c] = m.cursor;
      if (fresh) cur[c] = m.cursor;
      return fresh;
    },
    heads(s, h) {
      const set: Record<string, string> = {};
      for (const c in h)
        if (c in cur && s[c] === undefined) {
          s[c] = h[c];
          if (cur[c] === undefined) cur[c] = set[c] = h[c]!;
        }
      return set;
    },
  };
}

/**
 * The poll validator (PROTOCOL.md): a strong entity-tag (RFC 9110 §8.8.3)
 * listing `channel=cursor`, channels sorted by name. Undefined when a channel
 * has no cursor yet: that poll goes without If-None-Match to learn heads.
 */
export function validator(cur: Pos): string | undefined {
  const parts: string[] = [];
  for (const ch of Object.keys(cur).sort()) {
    if (cur[ch] === undefined) return undefined;
    parts.push(ch + '=' + cur[ch]);
  }
  return '"' + parts.join(';') + '"';
}

/** Parses an ETag built like {@link validator}; tolerates a weak `W/` prefix. */
export function parseTag(tag: string | null): Record<string, string> {
  const out: Record<string, string> = {};
  const m = tag && /^(?:W\/)?"([^"]*)"$/.exec(tag.trim());
  if (m)
    for (const part of m[1]!.split(';')) {
      const i = part.indexOf('=');
      if (i > 0) out[part.slice(0, i)] = part.slice(i + 1);
    }
  return out;
}
