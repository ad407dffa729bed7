// POST /v1/publish (PROTOCOL.md "Publishing"): one event or a batch, from a
// holder of the publisher key. `data` is serialized once here; every subscriber
// then gets those same bytes.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { publisherKeysOf, type Config } from '../config.js';
import type { ServerContext } from '../context.js';
import { isChannelName } from '../pubsub/channels.js';
import { dataProblem } from '../pubsub/data-check.js';
import { fanoutBehind, fanoutRetryAfterS } from '../pubsub/backlog.js';
import { busUnavailable, HttpError, sendError, sendJson } from './errors.js';
import { bearerToken } from './poll.js';

/**
 * Cap on the whole request body: maxBatch events, each up to maxMessageBytes of
 * data, with room for the envelope and formatting whitespace that JSON.stringify
 * drops (data is measured after re-serialization). Only read after the key is checked.
 */
export function publishBodyLimit(config: Pick<Config, 'maxBatch' | 'maxMessageBytes'>): number {
  return config.maxBatch * (2 * config.maxMessageBytes + 1024) + 1024;
}

/**
 * Compare keys in constant time; hashing first makes lengths equal and hides the
 * key's length. With several keys (a rotation) every one is compared, matched or
 * not, so the time does not tell which one matched.
 */
export function publisherKeyMatches(given: string | null, keys: string | readonly string[]): boolean {
  if (given === null) return false;
  const a = createHash('sha256').update(given).digest();
  let ok = false;
  for (const key of typeof keys === 'string' ? [keys] : keys) {
    if (key === '') continue;
    if (timingSafeEqual(a, createHash('sha256').update(key).digest())) ok = true;
  }
  return ok;
}

/** config.maxDataDepth's default, for callers that pass a partial config. */
export const DEFAULT_MAX_DATA_DEPTH = 100;

export type ParsedPublish =
  | { ok: true; batch: boolean; events: { channel: string; json: string }[] }
  | { ok: false; error: HttpError };

/** Validate a parsed body: every event is checked before any is published. */
export function parsePublishBody(body: unknown, config: Pick<Config, 'maxBatch' | 'maxMessageBytes'> & Partial<Pick<Config, 'maxDataDepth'>>): ParsedPublish {
  const maxDepth = config.maxDataDepth ?? DEFAULT_MAX_DATA_DEPTH;
  const bad = (msg: string): ParsedPublish => ({ ok: false, error: new HttpError('bad_event', msg) });
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return bad('body must be {"channel","data"} or {"events":[...]}');
  const batch = 'events' in body;
  let items: unknown[];
  if (batch) {
    const list = (body as { events: unknown }).events;
    if (!Array.isArray(list) || list.length === 0) return bad('events must be a non-empty array');
    if (list.length > config.maxBatch) {
      return { ok: false, error: new HttpError('too_large', `at most ${config.maxBatch} events per batch, got ${list.length}`) };
    }
    items = list;
  } else {
    items = [body];
  }
  const events: { channel: string; json: string }[] = [];
  for (let i = 0; i < items.length; i++) {
    const where = batch ? `events[${i}]: ` : '';
    const item = items[i];
    if (typeof item !== 'object' || item === null || Array.isArray(item)) return bad(`${where}an event is {"channel","data"}`);
    const { channel, data } = item as { channel?: unknown; data?: unknown };
    if (!isChannelName(channel)) return bad(`${where}bad channel name: must match ^[A-Za-z0-9:_.\\-]{1,128}$`);
    if (data === undefined) return bad(`${where}data is required (any JSON value, null included)`);
    // Before JSON.stringify (which would overflow the stack on a deep enough value) and before any event is stored.
    const problem = dataProblem(data, maxDepth);
    if (problem !== null) return bad(where + problem);
    const json = JSON.stringify(data);
    const bytes = Buffer.byteLength(json);
    if (bytes > config.maxMessageBytes) {
      return { ok: false, error: new HttpError('too_large', `${where}data is ${bytes} bytes, over the ${config.maxMessageBytes}-byte limit`) };
    }
    events.push({ channel, json });
  }
  return { ok: true, batch, events };
}

/**
 * Read the body up to `limit` bytes: 'too-large' when it goes past (the caller
 * answers 413), 'aborted' when the client goes away first (nobody to answer).
 */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer | 'too-large' | 'aborted'> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        req.off('data', onData);
        req.pause();
        resolve('too-large');
        return;
      }
      chunks.push(c);
    };
    req.on('data', onData);
    req.once('end', () => resolve(Buffer.concat(chunks, size)));
    // Either of these without 'end' first: the client is gone. resolve() only counts once.
    req.once('error', () => resolve('aborted'));
    req.once('close', () => resolve(req.complete ? Buffer.concat(chunks, size) : 'aborted'));
  });
}

/** Answer 413 and close: the rest of the body is not worth reading (RFC 9110 §15.5.14). */
function tooLarge(res: ServerResponse, message: string): void {
  res.shouldKeepAlive = false;
  res.once('finish', () => res.socket?.destroySoon());
  sendError(res, new HttpError('too_large', message, { Connection: 'close' }));
}

export async function handlePublish(req: IncomingMessage, res: ServerResponse, ctx: ServerContext): Promise<void> {
  const started = process.hrtime.bigint();
  const { config } = ctx;
  if (!publisherKeyMatches(bearerToken(req.headers.authorization), publisherKeysOf(config))) {
    res.shouldKeepAlive = false; // the body is left unread
    return sendError(res, new HttpError('bad_publisher_key', 'publisher key missing or wrong', { 'WWW-Authenticate': 'Bearer realm="tidings-publish"' }));
  }
  const type = req.headers['content-type'];
  if (type !== undefined && !/^application\/([a-z0-9.+-]*\+)?json\s*(;|$)/i.test(type)) {
    res.shouldKeepAlive = false;
    return sendError(res, new HttpError('unsupported_media_type', 'Content-Type must be application/json'));
  }
  const limit = publishBodyLimit(config);
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit) return tooLarge(res, `body is ${declared} bytes, over the ${limit}-byte cap`);
  const raw = await readBody(req, limit);
  if (raw === 'aborted') return;
  if (raw === 'too-large') return tooLarge(res, `body over the ${limit}-byte cap`);

  let body: unknown;
  try {
    body = JSON.parse(raw.toString('utf8'));
  } catch {
    return sendError(res, new HttpError('bad_json', 'body is not valid JSON'));
  }
  const parsed = parsePublishBody(body, config);
  if (!parsed.ok) return sendError(res, parsed.error);

  // Backpressure: an event accepted now would reach subscribers too late to matter.
  const backlog = ctx.fanout?.();
  const behind = backlog === undefined ? null : fanoutBehind(backlog, config);
  if (behind !== null) {
    ctx.metrics.publishesRefused.inc();
    return sendError(res, new HttpError('fanout_behind', behind + '; retry later', { 'Retry-After': String(fanoutRetryAfterS(backlog!)) }));
  }

  let cursors: string[];
  try {
    cursors = await ctx.bus.publish(parsed.events);
  } catch (err) {
    const outage = busUnavailable(err);
    ctx.metrics.busErrors.inc({ op: 'publish' });
    if (outage) {
      // The bus logs the outage once; one line per refused publish would flood the log.
      ctx.log.debug({ err: errSummary(err) }, 'publish: bus unavailable');
      return sendError(res, outage);
    }
    // Never the error object itself: a Redis ReplyError carries the command and
    // its arguments, i.e. the event payload (personal data, up to 64 KiB a line).
    ctx.log.error({ err: errSummary(err), events: parsed.events.length }, 'publish failed');
    return sendError(res, new HttpError('internal', 'internal error'));
  }
  ctx.metrics.publishes.inc(parsed.events.length);
  ctx.metrics.publishDuration.observe(Number(process.hrtime.bigint() - started) / 1e9);
  sendJson(res, 200, parsed.batch ? { cursors } : { cursor: cursors[0] }, { 'Cache-Control': 'no-store' });
}

/** An error for a log line: its name and the start of its message, nothing it may carry besides. */
export function errSummary(err: unknown): { name: string; message: string } {
  const e = err as { name?: unknown; message?: unknown } | null;
  return { name: String(e?.name ?? 'Error'), message: String(e?.message ?? err).slice(0, 200) };
}
