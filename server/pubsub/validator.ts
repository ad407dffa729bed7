// The poll validator (PROTOCOL.md "Polling"): an entity tag listing one cursor per
// channel, channels sorted by name: "news=lqz3k1-3;user:42=lqz3k1-17".
// Pure functions: build it, and read it back out of If-None-Match.
import { byName, CHANNEL_RE } from './channels.js';
import { CURSOR_RE } from './cursor.js';

/** channel -> cursor. */
export type Cursors = Map<string, string>;

/** Build the quoted entity tag for ETag, channels sorted by name. */
export function buildValidator(cursors: Cursors | Iterable<[string, string]>): string {
  const pairs = [...cursors];
  // Concatenated in place: every poll answer builds one, so no per-pair strings and no sort of one pair.
  if (pairs.length > 1) pairs.sort((a, b) => byName(a[0], b[0]));
  let tag = '"';
  for (let i = 0; i < pairs.length; i++) tag += (i === 0 ? '' : ';') + pairs[i]![0] + '=' + pairs[i]![1];
  return tag + '"';
}

export interface EntityTag {
  weak: boolean;
  /** The opaque-tag without its quotes. */
  opaque: string;
}

export type IfNoneMatch =
  | { kind: 'any' }
  | { kind: 'tags'; tags: EntityTag[] }
  | { kind: 'invalid'; message: string };

// RFC 9110 §8.8.3: entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE, etagc = %x21 / %x23-7E / obs-text.
// Sticky so we can walk a list without slicing.
const ETAG_RE = /(W\/)?"([\x21\x23-\x7e\x80-\xff]*)"/y;

/**
 * Parse If-None-Match: "*" or a comma list of entity tags (RFC 9110 §13.1.2).
 * Empty list elements are skipped (§5.6.1: recipients accept them). Several
 * header lines arrive joined with ", " by node:http, which is the same list.
 */
export function parseIfNoneMatch(header: string): IfNoneMatch {
  const s = header.trim();
  if (s === '*') return { kind: 'any' };
  const tags: EntityTag[] = [];
  let i = 0;
  while (i < s.length) {
    // OWS and empty elements before the next tag.
    while (i < s.length && (s[i] === ' ' || s[i] === '\t' || s[i] === ',')) i++;
    if (i >= s.length) break;
    ETAG_RE.lastIndex = i;
    const m = ETAG_RE.exec(s);
    if (!m) return { kind: 'invalid', message: `If-None-Match is not a list of entity tags (at offset ${i})` };
    tags.push({ weak: m[1] !== undefined, opaque: m[2]! });
    i = ETAG_RE.lastIndex;
    while (i < s.length && (s[i] === ' ' || s[i] === '\t')) i++;
    if (i < s.length && s[i] !== ',') return { kind: 'invalid', message: `If-None-Match: expected "," at offset ${i}` };
  }
  if (tags.length === 0) return { kind: 'invalid', message: 'If-None-Match is empty' };
  return { kind: 'tags', tags };
}

export type ValidatorResult = { ok: true; cursors: Cursors } | { ok: false; message: string };

/**
 * Read `ch=cursor;ch=cursor` (the opaque-tag of one entity tag). Order is not
 * enforced (a client may build it itself); a channel listed twice, a bad channel
 * name or a string outside the cursor alphabet is an error (400). An empty tag
 * lists no channels. Whether a cursor is one we can replay from is the bus's
 * question, not this one's: a well-formed foreign cursor gets a reset, not a 400.
 */
export function parseValidator(opaque: string): ValidatorResult {
  const cursors: Cursors = new Map();
  if (opaque === '') return { ok: true, cursors };
  for (const pair of opaque.split(';')) {
    const eq = pair.indexOf('=');
    const ch = eq < 0 ? pair : pair.slice(0, eq);
    const cursor = eq < 0 ? '' : pair.slice(eq + 1);
    if (!CHANNEL_RE.test(ch)) return { ok: false, message: `validator: bad channel name ${JSON.stringify(ch.slice(0, 140))}` };
    if (!CURSOR_RE.test(cursor)) return { ok: false, message: `validator: bad cursor for ${ch}` };
    if (cursors.has(ch)) return { ok: false, message: `validator: channel ${ch} listed twice` };
    cursors.set(ch, cursor);
  }
  return { ok: true, cursors };
}

/**
 * True when the validator names exactly a cursor equal to the head for every
 * requested channel. Channels in the validator that were not requested do not count.
 */
export function matchesHeads(cursors: Cursors, heads: Cursors): boolean {
  for (const [ch, head] of heads) if (cursors.get(ch) !== head) return false;
  return true;
}
