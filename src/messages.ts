/** Server → client messages (PROTOCOL.md), same shape on both transports. */
export type ServerMessage =
  | { type: 'event'; channel: string; cursor: string; data: unknown }
  | { type: 'reset'; channel: string; cursor: string }
  | { type: 'welcome'; ping: number; channels: Record<string, string> }
  | { type: 'ping' }
  | { type: 'other' };

/** PROTOCOL.md: cursors are 1 to 64 of `[0-9A-Za-z_.-]`. */
export const CURSOR = /^[\w.-]{1,64}$/;
/** PROTOCOL.md channel names. */
export const CHANNEL = /^[\w:.-]{1,128}$/;

const str = (v: unknown): v is string => typeof v === 'string';

/**
 * Validates one decoded message. Returns undefined for anything malformed
 * (the caller reports PROTOCOL); an unknown `type` is `other`, ignored, so a
 * newer server can add message types.
 */
export function toMessage(m: any): ServerMessage | undefined {
  if (!m || typeof m !== 'object' || !str(m.type)) return undefined;
  switch (m.type) {
    case 'event':
    case 'reset':
      return str(m.channel) && str(m.cursor) && CURSOR.test(m.cursor) ? m : undefined;
    case 'welcome':
      return m.ping > 0 && m.channels && typeof m.channels === 'object' ? m : undefined;
    case 'ping':
      return m;
    default:
      return { type: 'other' };
  }
}

/** JSON.parse that returns undefined instead of throwing. */
export function json(text: unknown): any {
  try {
    return str(text) ? JSON.parse(text) : undefined;
  } catch {
    return undefined;
  }
}

/** Decodes one WebSocket text frame; undefined if it is not a valid message. */
export const parseFrame = (data: unknown) => toMessage(json(data));

/**
 * Seconds → ms from a header: delta-seconds, or for Retry-After also an
 * HTTP-date (RFC 9110 §10.2.3). Undefined when absent or unparsable.
 */
export function headerDelay(v: string | null, now: number): number | undefined {
  if (!v) return undefined;
  if (/^\s*\d+(\.\d+)?\s*$/.test(v)) return +v * 1000;
  const t = Date.parse(v);
  return t === t ? Math.max(0, t - now) : undefined;
}
