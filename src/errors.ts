/**
 * Every error the SDK reports, in one table. Codes are stable: applications
 * switch on `err.code`, never on the message. The descriptions are
 * documentation only: the table is used as a type, so it does not ship in
 * the bundle (the message is the code plus a detail).
 */
export const ERRORS = {
  /** 4401 or 401 again right after `token()` was called for a fresh one. Fatal. */
  TOKEN_REJECTED: 'token rejected',
  /** 4403 or 403: a channel is not granted by the token. Fatal. */
  FORBIDDEN: 'channel not granted',
  /** 4400 or 400: the server rejected our hello or channel list. Fatal. */
  BAD_REQUEST: 'bad request',
  /** `token()` threw, rejected, timed out (`tokenTimeout`) or gave no non-empty string; `cause` holds what it threw. Retried with backoff. */
  TOKEN_FETCH_FAILED: 'token fetch failed',
  /** The server sent something that is not a PROTOCOL.md message. The connection is dropped and resumed. */
  PROTOCOL: 'protocol error',
  /** A WebSocket attempt or a poll failed on the network (refused, blocked, timed out); `cause` holds the underlying error when there is one. Retried. */
  NETWORK: 'network error',
  /** A poll got an unexpected HTTP status (404 wrong path, 5xx, 429/503 under load); see `status`. Retried. */
  HTTP: 'http error',
  /** `ready()` was waiting when the client was closed. */
  CLOSED: 'closed',
  /** `createClient` was given an unusable option (thrown, never emitted). */
  BAD_OPTIONS: 'bad options',
} as const;

export type ErrorCode = keyof typeof ERRORS;

/** The one error type the SDK emits (and throws from `createClient`). */
export class TidingsError extends Error {
  /** WebSocket close code that caused it, if any. */
  closeCode?: number;
  /** HTTP status of the poll response that caused it, if any. */
  status?: number;
  constructor(
    /** Stable code from {@link ERRORS}. */
    readonly code: ErrorCode,
    detail?: string,
    closeCode?: number,
    status?: number,
    cause?: unknown,
  ) {
    super(code + (detail ? ': ' + detail : ''), cause === undefined ? undefined : { cause });
    this.name = 'TidingsError';
    if (closeCode) this.closeCode = closeCode;
    if (status) this.status = status;
  }
}
