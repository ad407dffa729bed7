// RFC 7240 Prefer: only `wait` matters to us (§4.3). Preferences we do not
// understand, or malformed ones, are ignored, as §2 asks.

/**
 * The wait preference in seconds, capped at `max`, or null when absent, invalid,
 * or 0 (nothing to hold). Several header lines arrive joined by ", ".
 * The first `wait` wins (§2: a preference should not appear twice; we pick the first).
 */
export function parsePreferWait(header: string | string[] | undefined, max: number): number | null {
  if (header === undefined) return null;
  const text = Array.isArray(header) ? header.join(',') : header;
  for (const pref of text.split(',')) {
    const head = pref.split(';')[0]!;
    const eq = head.indexOf('=');
    if (eq < 0) continue;
    if (head.slice(0, eq).trim().toLowerCase() !== 'wait') continue;
    let value = head.slice(eq + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    if (!/^\d{1,9}$/.test(value)) return null;
    const n = Math.min(Number(value), max);
    return n > 0 ? n : null;
  }
  return null;
}
