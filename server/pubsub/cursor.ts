// The in-memory bus's cursor format: `<epoch>-<seq>`.
//
// `epoch` is unique per server start, so a cursor handed out before a restart is
// recognised as foreign and answered with `reset` (PROTOCOL.md "No silent loss"),
// never matched against a new sequence that happens to reuse its numbers.
// `seq` counts events per channel from 1; `<epoch>-0` is the head of an empty channel.
// Clients treat cursors as opaque; only this module parses them.

/** PROTOCOL.md: any cursor on the wire is 1..64 of these. */
export const CURSOR_RE = /^[0-9A-Za-z_.\-]{1,64}$/;
const OURS_RE = /^([0-9a-z]{1,40})-(0|[1-9][0-9]{0,15})$/;

export interface Cursor {
  epoch: string;
  seq: number;
}

/**
 * A new epoch: base36 start time in ms plus 4 random base36 digits, so two
 * servers started in the same millisecond (or a clock set back) still differ.
 */
export function newEpoch(nowMs: number = Date.now(), random: () => number = Math.random): string {
  const r = Math.floor(random() * 36 ** 4).toString(36).padStart(4, '0');
  return nowMs.toString(36) + r;
}

export function formatCursor(epoch: string, seq: number): string {
  return `${epoch}-${seq}`;
}

/** null when the string is not a cursor of this format (malformed: the caller resets). */
export function parseCursor(s: string): Cursor | null {
  const m = OURS_RE.exec(s);
  if (!m) return null;
  const seq = Number(m[2]);
  if (!Number.isSafeInteger(seq)) return null;
  return { epoch: m[1]!, seq };
}

/**
 * Order of two cursors of one channel: negative, 0, positive like a comparator,
 * or null when they cannot be ordered (different epochs, or malformed).
 */
export function compareCursors(a: string, b: string): number | null {
  const x = parseCursor(a);
  const y = parseCursor(b);
  if (!x || !y || x.epoch !== y.epoch) return null;
  return x.seq - y.seq;
}
