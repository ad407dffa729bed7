// Every HTTP error the server answers with, declared once: stable code -> status
// (STYLE.md §5). Bodies are PROTOCOL.md's {"error":"<code>","message":"<text>"}.
import type { ServerResponse } from 'node:http';

export const HTTP_ERRORS = {
  bad_request: 400,          // request target or framing we cannot read
  bad_channels: 400,         // ?channels missing, a bad name, or more than maxChannels
  bad_validator: 400,        // If-None-Match that is not a validator
  bad_json: 400,             // publish body is not JSON
  bad_event: 400,            // publish body is JSON but not an event or a batch
  token_missing: 401,        // no Authorization: Bearer on /v1/poll
  token_invalid: 401,
  token_expired: 401,
  token_bad_claims: 401,
  bad_publisher_key: 401,
  channel_forbidden: 403,    // a channel the token does not grant
  origin_forbidden: 403,     // Origin not in TIDINGS_ALLOWED_ORIGINS
  not_found: 404,
  method_not_allowed: 405,   // answered with Allow (RFC 9110 §15.5.6)
  too_large: 413,            // publish data over maxMessageBytes, batch over maxBatch, body over its cap
  unsupported_media_type: 415,
  too_many_polls: 429,       // long-polls held for one token subject or address over their limit; with Retry-After
  upgrade_required: 426,     // plain GET /v1/ws (RFC 9110 §15.5.22: with Upgrade)
  internal: 500,
  draining: 503,             // with Retry-After
  over_capacity: 503,        // with Retry-After
  bus_unavailable: 503,      // with Retry-After
  fanout_behind: 503,        // publish refused: delivery to subscribers is too far behind; with Retry-After
} as const;
export type HttpErrorCode = keyof typeof HTTP_ERRORS;

export class HttpError extends Error {
  readonly status: number;
  constructor(readonly code: HttpErrorCode, message: string, readonly headers: Record<string, string> = {}) {
    super(message);
    this.name = 'HttpError';
    this.status = HTTP_ERRORS[code];
  }
}

/** Write a JSON body with Content-Length (never chunked: these bodies are small and known). */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, {
    ...headers,
    'Content-Type': 'application/json',
    'Content-Length': String(Buffer.byteLength(text)),
  });
  res.end(text);
}

export function sendError(res: ServerResponse, err: HttpError): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, err.status, { error: err.code, message: err.message }, err.headers);
}

/** Retry-After for a bus outage when the error does not say, seconds: long enough for a Redis failover to settle. */
export const BUS_RETRY_AFTER_S = 2;

/**
 * A bus outage (any error with code 'BUS_UNAVAILABLE', whichever Bus threw it) as
 * 503 + Retry-After, honouring the error's own `retryAfterS`; null for anything else.
 */
export function busUnavailable(err: unknown, headers: Record<string, string> = {}): HttpError | null {
  const e = err as { code?: unknown; retryAfterS?: unknown } | null;
  if (e?.code !== 'BUS_UNAVAILABLE') return null;
  const s = typeof e.retryAfterS === 'number' && e.retryAfterS >= 1 ? Math.ceil(e.retryAfterS) : BUS_RETRY_AFTER_S;
  return new HttpError('bus_unavailable', 'event bus unavailable; retry later', { ...headers, 'Retry-After': String(s) });
}
