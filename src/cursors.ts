import type { ServerMessage } from './messages.js';

/**
 * Recently delivered cursors remembered per channel for dedup. Bounds the
 * overlap two transports may both deliver during a switch (events published
 * between the probe's `hello` and the aborted poll): far more than a
 * long-poll round returns in practice.
 */
export const DEDUP_WINDOW = 64;

export interface Cursors {
  /** Copy of the current cursor per channel. */
  get(): Record<string, string>;
  /** Take a head cursor (welcome, first poll's ETag) for channels that have none yet. */
  heads(h: Record<string, string>): void;
  /**
   * Record an event/reset; false if it was already delivered (a duplicate
   * from the other transport or a replay), in which case the cursor is kept.
   */
  take(m: ServerMessage & { channel: string; cursor: string }): boolean;
}

/**
 * Cursor per channel = last event/reset received, else the welcome head
 * (PROTOCOL.md). Cursors are opaque, so "already delivered" cannot be an
 * ordering test: it is equality with one of the last DEDUP_WINDOW delivered.
 * An event and a reset may share a cursor (a reset names the head): both keep
 * their own identity, so a reset is never swallowed by an earlier event.
 */
export function cursorStore(channels: readonly string[], initial: Record<string, string> = {}, save?: (c: Record<string, string>) => void): Cursors {
  const cur: Record<string, string> = {};
  const seen: Record<string, string[]> = {};
  for (const ch of channels) {
    seen[ch] = [];
    if (typeof initial[ch] === 'string') cur[ch] = initial[ch];
  }
  const changed = () => save?.(cur);
  return {
    get: () => ({ ...cur }),
    heads(h) {
      let n = 0;
      for (const ch of channels) if (!(ch in cur) && typeof h[ch] === 'string') (cur[ch] = h[ch]), n++;
      if (n) changed();
    },
    take(m) {
      const recent = seen[m.channel];
      const key = m.type[0] + m.cursor;
      if (!recent || recent.includes(key)) return false;
      if (recent.push(key) > DEDUP_WINDOW) recent.shift();
      cur[m.channel] = m.cursor;
      changed();
      return true;
    },
  };
}

/**
 * The poll validator (PROTOCOL.md): a strong entity-tag (RFC 9110 §8.8.3)
 * listing `channel=cursor`, channels sorted by name. Undefined when a channel
 * has no cursor yet: that poll goes without If-None-Match to learn heads.
 */
export function validator(channels: readonly string[], cur: Record<string, string>): string | undefined {
  const parts: string[] = [];
  for (const ch of [...channels].sort()) {
    if (!(ch in cur)) return undefined;
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
