// Channel names (PROTOCOL.md "Channels, events, cursors").

/** PROTOCOL.md: a channel name matches this, e.g. `user:42`, `mailbox:42:inbox`. */
export const CHANNEL_RE = /^[A-Za-z0-9:_.\-]{1,128}$/;

export function isChannelName(s: unknown): s is string {
  return typeof s === 'string' && CHANNEL_RE.test(s);
}

export type ChannelListResult =
  | { ok: true; channels: string[] }
  | { ok: false; reason: 'empty' | 'bad_name' | 'too_many'; message: string };

/**
 * Parse `?channels=a,b` (already percent-decoded). Duplicates are dropped (asking
 * twice for one channel is harmless); the result is sorted by name, the order the
 * validator uses. `max` is config.maxChannels; exactly `max` distinct names pass.
 */
export function parseChannelList(raw: string | null | undefined, max: number): ChannelListResult {
  if (raw == null || raw.trim() === '') return { ok: false, reason: 'empty', message: 'channels is required: ?channels=a,b' };
  const set = new Set<string>();
  for (const part of raw.split(',')) {
    const name = part.trim();
    if (!CHANNEL_RE.test(name)) {
      return { ok: false, reason: 'bad_name', message: `bad channel name ${JSON.stringify(name.slice(0, 140))}: must match ${CHANNEL_RE.source}` };
    }
    set.add(name);
    if (set.size > max) return { ok: false, reason: 'too_many', message: `at most ${max} channels per request` };
  }
  return { ok: true, channels: [...set].sort(byName) };
}

/** Code-unit order, locale-independent, so server and client sort alike. */
export function byName(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
