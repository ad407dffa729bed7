import { backoff } from '../backoff.js';
import type { Ctx } from '../context.js';
import { parseTag, validator } from '../cursors.js';
import { TidingsError } from '../errors.js';
import { json, toMessage } from '../messages.js';

/** Delay between plain polls when the server sends no X-Poll-Interval, ms. */
export const DEFAULT_POLL_INTERVAL = 5000;
/**
 * Least time between the starts of two polls when the first ended in 304: a
 * server (or proxy) answering 304 at once with X-Poll-Interval: 0 or a
 * claimed Preference-Applied must not get a hot loop.
 */
export const MIN_POLL_GAP = 1000;
/** While the page is hidden, the delay between polls is max(X-Poll-Interval, usual delay) times this. */
export const HIDDEN_SLOWDOWN = 4;

export interface PollTransport {
  /** Abort the poll in flight and stop. */
  stop(): void;
  /** Cut the current wait short and poll now. */
  now(): void;
}

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

/**
 * GET /v1/poll loop (PROTOCOL.md "Polling"). One request at a time; the
 * validator is rebuilt from the held cursors before each request, so
 * whatever the WebSocket delivered meanwhile counts too.
 */
export function pollTransport(c: Ctx): PollTransport {
  const { s, clock, random } = c;
  let on = true;
  let n = 0; // failed polls in a row
  let ok = false; // the last poll succeeded
  let retriedToken = false;
  let abort: AbortController | undefined;
  let wake: (() => void) | undefined;
  let quick = false;

  /** One request; returns the delay before the next, or undefined after a fatal error. */
  async function once(): Promise<number | undefined> {
    const token = await c.token();
    if (!on) return;
    const tag = validator(s.channels, c.cursors.get());
    const headers: Record<string, string> = { Authorization: 'Bearer ' + token };
    if (tag) {
      headers['If-None-Match'] = tag;
      // Long-poll only once a poll has succeeded: the first poll and the one
      // after a failure are plain, so they answer at once and state is right.
      if (s.longPoll && ok) headers.Prefer = 'wait=' + s.longPoll;
    }
    const ac = (abort = new AbortController());
    // A long-poll the network silently dropped would hang forever: same grace as the ping watchdog.
    const t = clock.setTimeout(() => ac.abort(), (headers.Prefer ? s.longPoll * 1000 : 0) + s.grace);
    const started = clock.now();
    try {
      // no-store: otherwise the browser may add its own If-None-Match to a plain
      // poll and hand back an old cached 200, replaying stale events after a reload.
      const r = await c.fetch(s.httpUrl + '/v1/poll?channels=' + s.channels.join(','), { headers, signal: ac.signal, cache: 'no-store' });
      const interval = headerDelay(r.headers.get('X-Poll-Interval'), 0) ?? DEFAULT_POLL_INTERVAL;
      // A held long-poll that returned may poll again at once (PROTOCOL.md).
      let after = /wait/.test(r.headers.get('Preference-Applied') ?? '') ? 0 : interval;
      const st = r.status;
      if (st === 304) after = Math.max(after, MIN_POLL_GAP - (clock.now() - started));
      if (st === 200 || st === 304) {
        if (st === 200) {
          // The heads-only answer may come with an empty body.
          const text = await r.text();
          const list = text ? json(text)?.messages : [];
          if (!Array.isArray(list)) throw new TidingsError('PROTOCOL', '', 0, st);
          const msgs = list.map(toMessage);
          if (!on) return;
          for (const m of msgs) {
            if (!m) throw new TidingsError('PROTOCOL', '', 0, st);
            c.deliver(m, 'polling');
          }
          // Heads only fill channels without a cursor: for the others the
          // messages above already moved the cursor, and dedup may have
          // dropped some, so the ETag must not overwrite them.
          c.cursors.heads(parseTag(r.headers.get('ETag')));
        }
        n = 0;
        ok = true;
        retriedToken = false;
        c.up('polling');
        // A hidden page needs no live badge: no long-poll back to back, plain polls spaced out.
        return c.hidden() ? Math.max(after, interval) * HIDDEN_SLOWDOWN : after;
      }
      if (st === 401) {
        if (retriedToken) return void c.fatal(new TidingsError('TOKEN_REJECTED', '', 0, st));
        retriedToken = true;
        c.stale();
        return 0;
      }
      if (st === 403 || st === 400) return void c.fatal(new TidingsError(st === 403 ? 'FORBIDDEN' : 'BAD_REQUEST', '', 0, st));
      ok = false;
      c.down('polling');
      return (st === 429 || st === 503 ? headerDelay(r.headers.get('Retry-After'), clock.now()) : undefined) ?? backoff(n++, s.base, s.cap, random);
    } finally {
      clock.clearTimeout(t);
      abort = undefined;
    }
  }

  (async () => {
    while (on) {
      quick = false;
      await c.online();
      if (!on) return;
      let d: number | undefined;
      try {
        d = await once();
      } catch (e) {
        if (!on) return;
        if (quick) d = 0; // now() aborted the request on purpose: not a failure, poll again at once
        else {
          if (e instanceof TidingsError) c.error(e);
          ok = false;
          c.down('polling');
          d = backoff(n++, s.base, s.cap, random);
        }
      }
      if (d === undefined || !on) return;
      if (quick) d = 0; // now() cut the wait short
      await Promise.race([c.sleep(d), new Promise<void>((r) => (wake = r))]);
    }
  })();

  return {
    stop() {
      on = false;
      abort?.abort();
    },
    now() {
      quick = true;
      ok = false; // a restart confirms the path with a plain poll first
      abort?.abort();
      wake?.();
    },
  };
}
