// GET /v1/poll (PROTOCOL.md "Polling"): the 304-aware polling fallback with
// optional long-poll (RFC 7240 Prefer: wait).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { TokenError, verifySubscriberToken } from '../auth/tokens.js';
import type { ServerContext } from '../context.js';
import type { Bus, StoredEvent } from '../pubsub/bus.js';
import { parseChannelList } from '../pubsub/channels.js';
import { buildValidator, matchesHeads, parseIfNoneMatch, parseValidator, type Cursors } from '../pubsub/validator.js';
import { busUnavailable, HttpError, sendError, sendJson, type HttpErrorCode } from './errors.js';
import type { HeldPolls, Waiter } from './held-polls.js';
import { parsePreferWait } from './prefer.js';
import { pollIntervalS } from './poll-interval.js';

export type PollOutcome =
  | { kind: 'not-modified'; etag: string }
  /** `more`: the byte budget cut the answer short; the ETag stops at the last message sent. */
  | { kind: 'changed'; messages: string[]; etag: string; more: boolean };

/**
 * Bytes of messages one poll answer carries before it stops (at a message
 * boundary; the first message always goes, whatever its size). History can hold
 * 1000 events of 64 KiB per channel: without a budget one poll could be gigabytes.
 * Nothing is lost: the ETag names the last message sent, and X-Poll-Interval: 0
 * asks the client to come straight back for the rest.
 */
export const POLL_BUDGET_BYTES = 1024 * 1024;

/** One wire message, built from already-serialized data (encoded once at publish). */
export function eventMessage(e: StoredEvent): string {
  return `{"type":"event","channel":${JSON.stringify(e.channel)},"cursor":${JSON.stringify(e.cursor)},"data":${e.json}}`;
}

export function resetMessage(channel: string, head: string): string {
  return `{"type":"reset","channel":${JSON.stringify(channel)},"cursor":${JSON.stringify(head)}}`;
}

/**
 * The answer for `channels` (sorted) given the client's validators (null: no
 * If-None-Match). 304 when any validator names the current head of every channel
 * (RFC 9110 §13.1.2: If-None-Match is false if any tag matches). Otherwise the
 * events after the first validator's cursors, or a reset per channel; a channel
 * the validator does not mention starts "from now on": no messages, its head in the ETag.
 */
export async function evaluatePoll(
  bus: Bus, channels: readonly string[], validators: Cursors[] | null, budget: number = POLL_BUDGET_BYTES,
): Promise<PollOutcome> {
  if (validators === null || validators.length > 1) {
    const heads: Cursors = new Map(await Promise.all(channels.map(async (ch) => [ch, await bus.head(ch)] as [string, string])));
    if (validators === null) return { kind: 'changed', messages: [], etag: buildValidator(heads), more: false };
    if (validators.some((v) => matchesHeads(v, heads))) return { kind: 'not-modified', etag: buildValidator(heads) };
  }
  const given = validators[0]!;
  const after: Cursors = new Map();
  const messages: string[] = [];
  let complete = true;
  const replays = await Promise.all(channels.map(async (ch) => {
    const c = given.get(ch);
    return c === undefined ? { ch, c, head: await bus.head(ch) } : { ch, c, replay: await bus.readAfter(ch, c) };
  }));
  let bytes = 0;
  let more = false;
  /** False once the budget is spent; the first message always fits. */
  const fits = (m: string): boolean => {
    if (more) return false;
    const n = Buffer.byteLength(m) + 1;
    if (messages.length > 0 && bytes + n > budget) {
      more = true;
      return false;
    }
    bytes += n;
    return true;
  };
  for (const r of replays) {
    if (r.c === undefined) {
      complete = false;
      after.set(r.ch, r.head!);
    } else if (r.replay!.kind === 'reset') {
      const m = resetMessage(r.ch, r.replay!.head);
      if (fits(m)) messages.push(m);
      after.set(r.ch, more ? r.c : r.replay!.head);
    } else {
      let last = r.c;
      for (const e of r.replay!.events) {
        const m = eventMessage(e);
        if (!fits(m)) break;
        messages.push(m);
        last = e.cursor;
      }
      after.set(r.ch, last);
    }
  }
  const etag = buildValidator(after);
  if (messages.length === 0 && complete) return { kind: 'not-modified', etag };
  return { kind: 'changed', messages, etag, more };
}

const TOKEN_CODES: Record<TokenError['code'], HttpErrorCode> = {
  missing: 'token_missing', invalid: 'token_invalid', expired: 'token_expired', 'bad-claims': 'token_bad_claims',
};

/** RFC 6750 §2.1: `Authorization: Bearer <token>`; the scheme is case-insensitive (RFC 9110 §11.1). */
export function bearerToken(header: string | undefined): string | null {
  const m = header ? /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(header) : null;
  return m ? m[1]! : null;
}

export interface PollDeps {
  ctx: ServerContext;
  held: HeldPolls;
  /** Bytes of messages per poll answer. @default POLL_BUDGET_BYTES */
  budget?: number;
  /** For the draining Retry-After spread. @default Math.random */
  random?: () => number;
}

/** The current X-Poll-Interval for this node (poll-interval.ts). */
export function currentPollInterval(ctx: Pick<ServerContext, 'config' | 'metrics'>, held: Pick<HeldPolls, 'size'>): number {
  return pollIntervalS(ctx.config.pollIntervalS, { held: held.size, maxHeld: ctx.config.maxHeldPolls, lagMs: ctx.metrics.eventLoopLagMs() });
}

/** PROTOCOL.md: every /v1/poll response carries these, errors included. */
export function pollCommonHeaders(ctx: Pick<ServerContext, 'config' | 'metrics'>, held: Pick<HeldPolls, 'size'>): Record<string, string> {
  return { 'Cache-Control': 'no-cache, private', 'X-Poll-Interval': String(currentPollInterval(ctx, held)) };
}

/** Handle GET /v1/poll. Never throws: every failure becomes a JSON error answer. */
export async function handlePoll(req: IncomingMessage, res: ServerResponse, url: URL, deps: PollDeps): Promise<void> {
  const { ctx, held } = deps;
  const { metrics } = ctx;
  res.once('finish', () => metrics.pollResponses.inc({ status: String(res.statusCode) }));
  const interval = () => currentPollInterval(ctx, held);
  const common = () => pollCommonHeaders(ctx, held);
  const fail = (err: HttpError) => sendError(res, new HttpError(err.code, err.message, { ...common(), ...err.headers }));
  /** A bus outage is 503 + Retry-After; anything else is logged and 500. */
  const failed = (err: unknown) => {
    const outage = busUnavailable(err);
    if (outage) return fail(outage);
    ctx.log.error({ err }, 'poll failed');
    fail(new HttpError('internal', 'internal error'));
  };
  try {
    await poll(req, res, url, deps, { interval, common, fail, failed });
  } catch (err) {
    failed(err);
  }
}

interface PollKit {
  interval: () => number;
  common: () => Record<string, string>;
  fail: (err: HttpError) => void;
  failed: (err: unknown) => void;
}

async function poll(req: IncomingMessage, res: ServerResponse, url: URL, deps: PollDeps, kit: PollKit): Promise<void> {
  const { ctx, held } = deps;
  const { config, metrics } = ctx;
  const { interval, common, fail } = kit;

  if (ctx.draining) {
    // Spread the retries over the drain window so they do not all land at once.
    const windowS = Math.max(1, Math.ceil(config.drainWindowMs / 1000));
    const retry = 1 + Math.floor((deps.random ?? Math.random)() * windowS);
    return fail(new HttpError('draining', 'server is draining; retry on another node or later', { 'Retry-After': String(retry) }));
  }

  const token = bearerToken(req.headers.authorization);
  let granted: Set<string>;
  try {
    granted = new Set((await verifySubscriberToken(config.subscriberSecret, token)).ch);
  } catch (err) {
    if (!(err instanceof TokenError)) throw err;
    const challenge = err.code === 'missing' ? 'Bearer realm="tidings"' : 'Bearer realm="tidings", error="invalid_token"';
    return fail(new HttpError(TOKEN_CODES[err.code], err.message, { 'WWW-Authenticate': challenge }));
  }

  const list = parseChannelList(url.searchParams.getAll('channels').join(','), config.maxChannels);
  if (!list.ok) return fail(new HttpError('bad_channels', list.message));
  const channels = list.channels;
  const denied = channels.filter((ch) => !granted.has(ch));
  if (denied.length > 0) return fail(new HttpError('channel_forbidden', `token does not grant: ${denied.join(', ')}`));

  let validators: Cursors[] | null = null;
  const inm = req.headers['if-none-match'];
  if (inm !== undefined) {
    const parsed = parseIfNoneMatch(inm);
    if (parsed.kind === 'invalid') return fail(new HttpError('bad_validator', parsed.message));
    if (parsed.kind === 'any') {
      // "*" matches any current representation (RFC 9110 §13.1.2): pin it to the heads
      // now, so a long-poll wakes on the next event rather than never.
      validators = [new Map(await Promise.all(channels.map(async (ch) => [ch, await ctx.bus.head(ch)] as [string, string])))];
    } else {
      validators = [];
      for (const tag of parsed.tags) {
        const v = parseValidator(tag.opaque);
        if (!v.ok) return fail(new HttpError('bad_validator', v.message));
        validators.push(v.cursors);
      }
    }
  }

  const wait = parsePreferWait(req.headers.prefer, config.maxPollWaitS);
  const answer = (out: PollOutcome) => {
    const headers: Record<string, string> = { ...common(), ETag: out.etag };
    // Cut short by the budget: come straight back for the rest.
    if (out.kind === 'changed' && out.more) headers['X-Poll-Interval'] = '0';
    if (wait !== null) headers['Preference-Applied'] = `wait=${wait}`;
    if (out.kind === 'not-modified') {
      // RFC 9110 §15.4.5: a 304 carries the ETag and Cache-Control the 200 would have.
      res.writeHead(304, headers);
      res.end();
      return;
    }
    const body = `{"messages":[${out.messages.join(',')}]}`;
    if (out.messages.length > 0) {
      metrics.messagesOut.inc(out.messages.length);
      metrics.bytesOut.inc(Buffer.byteLength(body));
    }
    sendJson(res, 200, body, headers);
  };

  if (wait === null) return answer(await evaluatePoll(ctx.bus, channels, validators, deps.budget));

  // Long-poll. Register before reading history, so an event that lands while we
  // read marks the waiter dirty instead of slipping between read and park.
  const deadline = held.now() + wait * 1000;
  let first = true;
  const w: Waiter = {
    channels, deadline, phase: 'evaluating', dirty: false,
    wake: () => void step().catch(onError),
  };
  const finish = () => {
    w.phase = 'done';
    held.unregister(w);
  };
  const onError = (err: unknown) => {
    finish();
    if (res.writableEnded || res.destroyed) return; // answered, or the client is gone
    kit.failed(err);
  };
  const step = async (): Promise<void> => {
    w.dirty = false;
    const out = await evaluatePoll(ctx.bus, channels, validators, deps.budget);
    if (w.phase === 'done') return; // the client went away meanwhile
    if (out.kind === 'changed') return (finish(), answer(out));
    if (w.dirty) return step();
    if (first && held.size > config.maxHeldPolls) {
      finish();
      return fail(new HttpError('over_capacity', `more than ${config.maxHeldPolls} long-polls held`, { 'Retry-After': String(interval()) }));
    }
    first = false;
    if (held.now() >= deadline || ctx.draining || held.closing) return (finish(), answer(out));
    w.phase = 'held';
  };
  // A held request whose client goes away is dropped (and its channels unwatched).
  res.once('close', () => {
    if (w.phase !== 'done') finish();
  });
  // Gone while we checked the token: 'close' has fired already, so do not park it.
  if (req.socket.destroyed) return;
  held.register(w);
  await step().catch(onError);
}
