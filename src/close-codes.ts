/**
 * What the client does when the server closes the socket, from the close-code
 * table in PROTOCOL.md. Codes not listed there (1001, 1006 from the browser
 * after a network error, 1007, 1009, 1011, 1013, 4408, 1000 …) back off and
 * reconnect: a notification client that silently stays down loses events.
 */
export type Reaction = 'stop' | 'token' | 'restart' | 'backoff';

export function reaction(code: number): Reaction {
  switch (code) {
    case 4400: // bad hello: retrying sends the same hello again
    case 4403: // channel not granted: the same token will be refused again
      return 'stop';
    case 4401: // token missing/invalid/expired: fetch a fresh one, retry once
      return 'token';
    case 1012: // service restart: reason holds the drain window in ms
      return 'restart';
    default:
      return 'backoff';
  }
}

/** The fatal error code for a 'stop' close code. */
export const stopCode = (code: number): 'FORBIDDEN' | 'BAD_REQUEST' => (code === 4403 ? 'FORBIDDEN' : 'BAD_REQUEST');
