// The pino logger factory. Secrets never reach a log line: tokens, keys and
// Authorization headers are redacted by path, wherever they appear in a log object.
import { pino, type DestinationStream, type Logger } from 'pino';

/** Paths censored in every log object (pino fast-redact syntax; `*` is one level). */
export const REDACT_PATHS = [
  'token', '*.token', 'key', '*.key', 'secret', '*.secret',
  'authorization', '*.authorization', 'headers.authorization', '*.headers.authorization',
  'req.headers.authorization', 'req.headers.cookie', 'headers.cookie',
  'publisherKey', '*.publisherKey', 'subscriberSecret', '*.subscriberSecret',
  'publisherKeys', '*.publisherKeys', 'subscriberSecrets', '*.subscriberSecrets', 'redisUrl', '*.redisUrl',
];

export interface LogOptions {
  /** pino level (config.logLevel). @default 'info' */
  level?: string;
  /** Where lines go. @default stdout */
  destination?: DestinationStream;
}

export function createLogger(opts: LogOptions = {}): Logger {
  return pino(
    { level: opts.level ?? 'info', base: { name: 'tidings' }, redact: { paths: REDACT_PATHS, censor: '[redacted]' } },
    // Synchronous on stdout: an async sonic-boom has a write in flight on the thread pool when
    // process.exit() flushes the rest synchronously, so the last lines of a drain came out of
    // order (seen: done before closing) or could be lost. Log lines are rare (sampled), so
    // a blocking write costs nothing that matters.
    opts.destination ?? pino.destination({ dest: 1, sync: true }),
  );
}
