/**
 * Asking the app for a token, the one way every caller does: the engine for
 * its hello or poll, and a tab that checks its own grant before it shares
 * (src/share).
 */
import { TidingsError } from './errors.js';
import type { Clock } from './types.js';

export interface TokenSource {
  token: string | ((ctx: { channels: string[] }) => string | Promise<string>);
  /** ms: a `token()` that never settles fails after this. */
  tokenTimeout: number;
  clock: Clock;
}

/** The app's token for `channels`; TOKEN_FETCH_FAILED if it throws, is not a non-empty string, or takes over tokenTimeout. */
export const fetchToken = (o: TokenSource, channels: string[]) =>
  new Promise<string>((resolve, reject) => {
    const t = o.clock.setTimeout(() => reject(new TidingsError('TOKEN_FETCH_FAILED', 'timeout')), o.tokenTimeout);
    Promise.resolve()
      .then(() => (typeof o.token === 'string' ? o.token : o.token({ channels })))
      .then((v) => {
        if (typeof v !== 'string' || !v) throw Error('not a non-empty string');
        resolve(v);
      })
      // (One already made here, as the union token call of src/share is, passes as it is.)
      .catch((e) => reject(e?.code == 'TOKEN_FETCH_FAILED' && e instanceof TidingsError ? e : new TidingsError('TOKEN_FETCH_FAILED', e?.message, 0, 0, e)))
      .finally(() => o.clock.clearTimeout(t));
  });
