// The first client message (PROTOCOL.md "Conversation after 101", step 1) and
// the server's answer, as pure functions over data: no socket, no bus.
import { CHANNEL_RE } from '../pubsub/channels.js';

export type HelloParse =
  | {
      ok: true;
      /** The raw `token` member; the connection verifies it (4401 when not a valid string). */
      token: unknown;
      /** Channel names, in the order of the hello's `channels` object. */
      names: string[];
      /** The client's cursor per channel (same index), or null for "from now on". Not yet validated as a cursor. */
      cursors: (string | null)[];
    }
  | { ok: false; reason: string };

/** Parse a message as JSON, or undefined. Text frames are already UTF-8 validated by the receiver. */
export function parseJson(data: Buffer, isText: boolean): unknown {
  if (!isText) return undefined;
  try {
    return JSON.parse(data.toString('utf8'));
  } catch {
    return undefined;
  }
}

/** The `type` of a client message, or null when it is not a JSON object with a string `type`. */
export function messageType(msg: unknown): string | null {
  if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) return null;
  const t = (msg as { type?: unknown }).type;
  return typeof t === 'string' ? t : null;
}

/**
 * Validate a hello (4400 on failure, PROTOCOL.md close codes). A cursor that is a
 * string but not a valid cursor is NOT an error here: the protocol answers a
 * malformed cursor with `reset` ("No silent loss"), so it is passed through.
 */
export function parseHello(msg: unknown, maxChannels: number): HelloParse {
  const type = messageType(msg);
  if (type === null) return { ok: false, reason: 'bad hello: not a JSON object with a type' };
  if (type !== 'hello') return { ok: false, reason: 'bad hello: expected type hello' };
  const { token, channels } = msg as { token?: unknown; channels?: unknown };
  if (typeof channels !== 'object' || channels === null || Array.isArray(channels)) {
    return { ok: false, reason: 'bad hello: channels must be an object' };
  }
  // Object keys from JSON.parse are internalized by V8, so every connection
  // naming `news` shares one string: no interning table needed.
  const names = Object.keys(channels);
  if (names.length === 0) return { ok: false, reason: 'bad hello: no channels' };
  if (names.length > maxChannels) return { ok: false, reason: `bad hello: more than ${maxChannels} channels` };
  const cursors: (string | null)[] = [];
  for (const name of names) {
    if (!CHANNEL_RE.test(name)) return { ok: false, reason: 'bad hello: bad channel name' };
    const c = (channels as Record<string, unknown>)[name];
    if (c !== null && typeof c !== 'string') return { ok: false, reason: 'bad hello: cursor must be a string or null' };
    cursors.push(c);
  }
  return { ok: true, token, names, cursors };
}

/** PROTOCOL.md step 2. Names and heads are validated strings that JSON would not escape. */
export function welcomeMessage(pingMs: number, names: string[], heads: string[]): string {
  let s = '{"type":"welcome","ping":' + pingMs + ',"channels":{';
  for (let i = 0; i < names.length; i++) s += (i ? ',"' : '"') + names[i] + '":"' + heads[i] + '"';
  return s + '}}';
}
