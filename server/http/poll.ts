// GET /v1/poll (PROTOCOL.md "Polling"): the 304-aware polling fallback with
// optional long-poll (RFC 7240 Prefer: wait).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { cachedSubscriberClaims, TokenError, verifySubscriberToken, type SubscriberClaims } from '../auth/tokens.js';
import type { ServerContext } from '../context.js';
import { subscriberKeyring } from '../config.js';
import { claimedSub, clientAddress, sampled } from '../ops-log.js';
import type { Bus, Replay, StoredEvent } from '../pubsub/bus.js';
import { CHANNEL_RE, parseChannelList } from '../pubsub/channels.js';
import { CURSOR_RE } from '../pubsub/cursor.js';
import { buildValidator, matchesHeads, parseIfNoneMatch, parseValidator, type Cursors } from '../pubsub/validator.js';
import { NO_ORIGIN_HEADERS } from './cors.js';
import { busUnavailable, HttpError, sendError, type HttpErrorCode } from './errors.js';
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
 * the validator does not mention gets a reset too (nothing proves the client has
 * every event of it), with its head in the ETag.
 */
export async function evaluatePoll(
  bus: Pick<Bus, 'head' | 'readAfter'>, channels: readonly string[], validators: Cursors[] | null, budget: number = POLL_BUDGET_BYTES,
): Promise<PollOutcome> {
  if (validators === null || validators.length > 1) {
    const heads: Cursors = new Map(await Promise.all(channels.map(async (ch) => [ch, await bus.head(ch)] as [string, string])));
    if (validators === null) return { kind: 'changed', messages: [], etag: buildValidator(heads), more: false };
    if (validators.some((v) => matchesHeads(v, heads))) return { kind: 'not-modified', etag: buildValidator(heads) };
  }
  const given = validators[0]!;
  const replays = await Promise.all(channels.map(async (ch): Promise<ChannelRead> => {
    const c = given.get(ch);
    return c === undefined ? { ch, c, head: await bus.head(ch) } : { ch, c, replay: await bus.readAfter(ch, c) };
  }));
  return outcomeOf(replays, budget);
}

/** What was read for one channel: its replay after the client's cursor `c`, or its head when the validator does not name it. */
type ChannelRead =
  | { ch: string; c: undefined; head: string; replay?: undefined }
  | { ch: string; c: string; replay: Replay; head?: undefined };

/** The answer from what was read, channels in name order (evaluatePoll's second half, synchronous). */
function outcomeOf(replays: readonly ChannelRead[], budget: number): PollOutcome {
  const after: Cursors = new Map();
  const messages: string[] = [];
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
      // The client sent a validator that does not name this channel (or names
      // none: If-None-Match: ""). It may be missing events we cannot prove it
      // has: reset, never a silent "from now on" (PROTOCOL.md "No silent loss").
      // Cut by the budget: left out of the ETag too, so the next poll asks again.
      const m = resetMessage(r.ch, r.head);
      if (fits(m)) { messages.push(m); after.set(r.ch, r.head); }
    } else if (r.replay.kind === 'reset') {
      const m = resetMessage(r.ch, r.replay.head);
      if (fits(m)) messages.push(m);
      after.set(r.ch, more ? r.c : r.replay.head);
    } else {
      let last = r.c;
      for (const e of r.replay.events) {
        const m = eventMessage(e);
        if (!fits(m)) break;
        messages.push(m);
        last = e.cursor;
      }
      after.set(r.ch, last);
    }
  }
  const etag = buildValidator(after);
  if (messages.length === 0) return { kind: 'not-modified', etag };
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
  /** Shared reads for woken long-polls (one read per channel and cursor per event). @default ctx.bus, unshared */
  reads?: Pick<Bus, 'head' | 'readAfter'>;
  /** Bytes of messages per poll answer. @default POLL_BUDGET_BYTES */
  budget?: number;
  /** For the draining Retry-After spread. @default Math.random */
  random?: () => number;
}

/** The current X-Poll-Interval for this node (poll-interval.ts). */
export function currentPollInterval(ctx: Pick<ServerContext, 'config' | 'metrics'>, held: Pick<HeldPolls, 'size'>): number {
  return pollIntervalS(ctx.config.pollIntervalS, { held: held.size, maxHeld: ctx.config.maxHeldPolls, lagMs: ctx.metrics.eventLoopLagMs() });
}

const CACHE_CONTROL = 'no-cache, private';
// The interval is a small integer (base × 1, 2 or 4): its string, made once.
const SECONDS: string[] = Array.from({ length: 256 }, (_, i) => String(i));
const secondsText = (n: number): string => SECONDS[n] ?? String(n);

/** PROTOCOL.md: every /v1/poll response carries these, errors included. */
export function pollCommonHeaders(ctx: Pick<ServerContext, 'config' | 'metrics'>, held: Pick<HeldPolls, 'size'>): Record<string, string> {
  return { 'Cache-Control': CACHE_CONTROL, 'X-Poll-Interval': secondsText(currentPollInterval(ctx, held)) };
}

// One labels object per status, not one per response (prom-client hashes it on every inc).
const STATUS_LABELS = new Map<number, { status: string }>();
function countResponse(ctx: ServerContext, status: number): void {
  let labels = STATUS_LABELS.get(status);
  if (labels === undefined) STATUS_LABELS.set(status, (labels = { status: String(status) }));
  ctx.metrics.pollResponses.inc(labels);
}

/**
 * The bearer token of a request. A keep-alive poller sends the same Authorization
 * on every request: comparing it with the connection's previous one is cheaper
 * than the regex, and the token string kept from last time carries its computed
 * hash, so the token cache's lookup does not hash ~200 characters again. Only the
 * parse is remembered; the token is checked against the cache (expiry) each time.
 */
const lastAuth = new WeakMap<object, { header: string; token: string }>();
function tokenOf(req: IncomingMessage): string | null {
  const header = req.headers.authorization;
  if (header === undefined) return null;
  const last = lastAuth.get(req.socket);
  if (last !== undefined && last.header === header) return last.token;
  const token = bearerToken(header);
  if (token !== null) lastAuth.set(req.socket, { header, token });
  return token;
}

/**
 * One GET /v1/poll. `channelsParam` is every ?channels value joined by ","; `cors`
 * the CORS headers for this request's Origin (router.ts has checked the Origin).
 * Never throws: every failure becomes a JSON error answer.
 *
 * Pollers mostly get 304s, and a 304 costs node:http itself about 15 µs of CPU,
 * so this path avoids what it can: a token seen before is checked synchronously
 * (tokens.ts cache), one channel with its own validator skips the parsers and
 * async functions (the fast path below), and the headers go to writeHead as one
 * list. Errors, long-polls and everything else take the general path.
 */
export function handlePoll(req: IncomingMessage, res: ServerResponse, channelsParam: string, cors: Readonly<Record<string, string>>, deps: PollDeps): void {
  const { ctx } = deps;
  const { config } = ctx;
  try {
    if (ctx.draining) {
      // Spread the retries over the drain window so they do not all land at once.
      const windowS = Math.max(1, Math.ceil(config.drainWindowMs / 1000));
      const retry = 1 + Math.floor((deps.random ?? Math.random)() * windowS);
      return fail(res, cors, deps, new HttpError('draining', 'server is draining; retry on another node or later', { 'Retry-After': String(retry) }));
    }
    const token = tokenOf(req);
    let claims: SubscriberClaims | undefined;
    try {
      claims = cachedSubscriberClaims(subscriberKeyring(config), token);
    } catch (err) {
      return tokenFailed(req, res, cors, deps, err);
    }
    if (claims !== undefined) return authorized(req, res, channelsParam, cors, deps, claims);
    verifySubscriberToken(subscriberKeyring(config), token)
      .then((c) => authorized(req, res, channelsParam, cors, deps, c), (err) => tokenFailed(req, res, cors, deps, err))
      .catch((err) => failed(res, cors, deps, err));
  } catch (err) {
    failed(res, cors, deps, err);
  }
}

function tokenFailed(req: IncomingMessage, res: ServerResponse, cors: Readonly<Record<string, string>>, deps: PollDeps, err: unknown): void {
  if (!(err instanceof TokenError)) return failed(res, cors, deps, err);
  const { ctx } = deps;
  sampled(ctx.log, 'auth_failed', {
    transport: 'polling', reason: err.code, sub: claimedSub(bearerToken(req.headers.authorization)), ip: clientAddress(req, ctx.config),
  }, 'subscriber token refused (401)');
  const challenge = err.code === 'missing' ? 'Bearer realm="tidings"' : 'Bearer realm="tidings", error="invalid_token"';
  fail(res, cors, deps, new HttpError(TOKEN_CODES[err.code], err.message, { 'WWW-Authenticate': challenge }));
}

/** The error answer, with the poll headers and this request's CORS headers. */
function fail(res: ServerResponse, cors: Readonly<Record<string, string>>, deps: PollDeps, err: HttpError): void {
  countResponse(deps.ctx, err.status);
  sendError(res, new HttpError(err.code, err.message, { ...pollCommonHeaders(deps.ctx, deps.held), ...cors, ...err.headers }));
}

/** A bus outage is 503 + Retry-After; anything else is logged and 500. */
function failed(res: ServerResponse, cors: Readonly<Record<string, string>>, deps: PollDeps, err: unknown): void {
  const outage = busUnavailable(err);
  if (outage) {
    deps.ctx.metrics.busErrors.inc({ op: 'poll' });
    return fail(res, cors, deps, outage);
  }
  deps.ctx.log.error({ err }, 'poll failed');
  fail(res, cors, deps, new HttpError('internal', 'internal error'));
}

function authorized(
  req: IncomingMessage, res: ServerResponse, channelsParam: string, cors: Readonly<Record<string, string>>, deps: PollDeps, claims: SubscriberClaims,
): void {
  const { ctx } = deps;
  let channels: string[];
  // One channel, the commonest poll: what parseChannelList would answer, without its Set and sort.
  if (!channelsParam.includes(',') && CHANNEL_RE.test(channelsParam) && ctx.config.maxChannels >= 1) channels = [channelsParam];
  else {
    const list = parseChannelList(channelsParam, ctx.config.maxChannels);
    if (!list.ok) return fail(res, cors, deps, new HttpError('bad_channels', list.message));
    channels = list.channels;
  }
  // A token grants a handful of channels: a scan beats building a Set per request.
  let denied: string[] | null = null;
  for (const ch of channels) if (!claims.ch.includes(ch)) (denied ??= []).push(ch);
  if (denied !== null) return fail(res, cors, deps, new HttpError('channel_forbidden', `token does not grant: ${denied.join(', ')}`));

  // Fast path, the SDK's plain poll of one channel: If-None-Match is that channel's
  // validator as we sent it. Reading it needs no parser and the answer no async
  // function: this is evaluatePoll for one channel and one validator, step for step.
  const inm = req.headers['if-none-match'];
  const cursor = channels.length === 1 && inm !== undefined && req.headers.prefer === undefined ? soleCursor(inm, channels[0]!) : null;
  if (cursor === null) {
    poll(req, res, channels, cors, deps, claims.sub).catch((err) => failed(res, cors, deps, err));
    return;
  }
  const ch = channels[0]!;
  ctx.bus.readAfter(ch, cursor).then(
    (replay) => {
      try {
        // Nothing after the cursor: outcomeOf's 304, whose ETag `"<ch>=<cursor>"` is
        // If-None-Match itself when strong (soleCursor checked its exact form).
        const out: PollOutcome = replay.kind === 'events' && replay.events.length === 0
          ? { kind: 'not-modified', etag: inm!.charCodeAt(0) === QUOTE ? inm! : inm!.slice(2) }
          : outcomeOf([{ ch, c: cursor, replay }], deps.budget ?? POLL_BUDGET_BYTES);
        writeAnswer(res, cors, deps, out, null);
      } catch (err) {
        failed(res, cors, deps, err);
      }
    },
    (err) => failed(res, cors, deps, err),
  );
}

const QUOTE = 0x22, EQUALS = 0x3d;

/**
 * The cursor when `inm` is the one entity tag `"<ch>=<cursor>"` (or W/ that:
 * If-None-Match compares weakly, RFC 9110 §13.1.2) with a well-formed cursor; null
 * for anything else, which the general parser then reads (and may refuse with 400).
 * Exactly what parseIfNoneMatch + parseValidator make of such a header.
 */
export function soleCursor(inm: string, ch: string): string | null {
  const open = inm.startsWith('W/') ? 2 : 0;
  const end = inm.length - 1;
  if (inm.charCodeAt(open) !== QUOTE || inm.charCodeAt(end) !== QUOTE || end <= open) return null;
  if (!inm.startsWith(ch, open + 1) || inm.charCodeAt(open + 1 + ch.length) !== EQUALS) return null;
  const cursor = inm.slice(open + 2 + ch.length, end);
  return CURSOR_RE.test(cursor) ? cursor : null;
}

/**
 * Write a poll answer: PROTOCOL.md's headers, this request's CORS headers, the
 * ETag, and Preference-Applied for a long-poll. One flat header list for
 * writeHead, so node:http stores nothing header by header.
 */
function writeAnswer(res: ServerResponse, cors: Readonly<Record<string, string>>, deps: PollDeps, out: PollOutcome, wait: number | null): void {
  const { ctx } = deps;
  // Cut short by the budget: come straight back for the rest.
  const interval = out.kind === 'changed' && out.more ? '0' : secondsText(currentPollInterval(ctx, deps.held));
  const headers = ['Cache-Control', CACHE_CONTROL, 'X-Poll-Interval', interval];
  if (cors === NO_ORIGIN_HEADERS) headers.push('Vary', 'Origin');
  else for (const k of Object.keys(cors)) headers.push(k, cors[k]!);
  headers.push('ETag', out.etag);
  if (wait !== null) headers.push('Preference-Applied', `wait=${wait}`);
  if (out.kind === 'not-modified') {
    // RFC 9110 §15.4.5: a 304 carries the ETag and Cache-Control the 200 would have.
    countResponse(ctx, 304);
    res.writeHead(304, headers);
    res.end();
    return;
  }
  const body = `{"messages":[${out.messages.join(',')}]}`;
  const length = Buffer.byteLength(body);
  if (out.messages.length > 0) {
    ctx.metrics.messagesOut.inc(out.messages.length);
    ctx.metrics.bytesOut.inc(length);
  }
  headers.push('Content-Type', 'application/json', 'Content-Length', String(length));
  countResponse(ctx, 200);
  res.writeHead(200, headers);
  res.end(body);
}

/** Everything but the fast 304: validators parsed, history read, long-polls held. */
async function poll(
  req: IncomingMessage, res: ServerResponse, channels: string[], cors: Readonly<Record<string, string>>, deps: PollDeps, sub: string,
): Promise<void> {
  const { ctx, held } = deps;
  const { config } = ctx;

  let validators: Cursors[] | null = null;
  const inm = req.headers['if-none-match'];
  if (inm !== undefined) {
    const parsed = parseIfNoneMatch(inm);
    if (parsed.kind === 'invalid') return fail(res, cors, deps, new HttpError('bad_validator', parsed.message));
    if (parsed.kind === 'any') {
      // "*" matches any current representation (RFC 9110 §13.1.2): pin it to the heads
      // now, so a long-poll wakes on the next event rather than never.
      validators = [new Map(await Promise.all(channels.map(async (ch) => [ch, await ctx.bus.head(ch)] as [string, string])))];
    } else {
      validators = [];
      for (const tag of parsed.tags) {
        const v = parseValidator(tag.opaque);
        if (!v.ok) return fail(res, cors, deps, new HttpError('bad_validator', v.message));
        validators.push(v.cursors);
      }
    }
  }

  const wait = parsePreferWait(req.headers.prefer, config.maxPollWaitS);
  const answer = (out: PollOutcome) => writeAnswer(res, cors, deps, out, wait);

  if (wait === null) return answer(await evaluatePoll(ctx.bus, channels, validators, deps.budget));

  // Long-poll. Register before reading history, so an event that lands while we
  // read marks the waiter dirty instead of slipping between read and park.
  const deadline = held.now() + wait * 1000;
  let first = true;
  const w: Waiter = {
    channels, deadline, phase: 'evaluating', dirty: false,
    wake: () => void step().catch(onError),
    // Behind a proxy (TIDINGS_TRUST_PROXY) every poll comes from the proxy's address:
    // the per-address cap must count the client's.
    sub, source: clientAddress(req, deps.ctx.config) ?? '',
  };
  const finish = () => {
    w.phase = 'done';
    held.unregister(w);
  };
  const onError = (err: unknown) => {
    finish();
    if (res.writableEnded || res.destroyed) return; // answered, or the client is gone
    failed(res, cors, deps, err);
  };
  const step = async (): Promise<void> => {
    w.dirty = false;
    const out = await evaluatePoll(deps.reads ?? ctx.bus, channels, validators, deps.budget);
    if (w.phase === 'done') return; // the client went away meanwhile
    if (out.kind === 'changed') return (finish(), answer(out));
    if (w.dirty) return step();
    if (first) {
      // One holder must not fill the global cap (and raise X-Poll-Interval for everyone):
      // per token subject and per address first, 429 as the client's own excess.
      const n = held.countOf(w);
      const over = n.sub > config.maxHeldPollsPerSub ? `more than ${config.maxHeldPollsPerSub} long-polls held for this token subject`
        : n.source > config.maxHeldPollsPerSource ? `more than ${config.maxHeldPollsPerSource} long-polls held from this address` : null;
      if (over !== null) {
        finish();
        return fail(res, cors, deps, new HttpError('too_many_polls', over, { 'Retry-After': secondsText(config.pollIntervalS) }));
      }
    }
    if (first && held.size > config.maxHeldPolls) {
      finish();
      const retry = secondsText(currentPollInterval(ctx, held));
      return fail(res, cors, deps, new HttpError('over_capacity', `more than ${config.maxHeldPolls} long-polls held`, { 'Retry-After': retry }));
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
