// Every setting and limit, declared once: name, default, why (STYLE.md §12).
// Environment variables (PROTOCOL.md "Server configuration") with flags that mirror them.
import { randomBytes } from 'node:crypto';
import { parseSeed } from './pubsub/seeds.js';
import { readFileSync } from 'node:fs';
import type { SubscriberKey } from './auth/tokens.js';
import { ConfigError } from './config-error.js';
import { checkPublisherKey, checkSecretLength, normalizeAllowedOrigins } from './config-checks.js';

export interface Config {
  /** TIDINGS_PORT / --port. 0 = any free port (printed at start). */
  port: number;
  /** TIDINGS_HOST / --host. */
  host: string;
  /** TIDINGS_SUBSCRIBER_SECRET: HS256 key for subscriber tokens. Generated and printed when unset. */
  subscriberSecret: string;
  /**
   * TIDINGS_SUBSCRIBER_SECRETS: several HS256 keys at once for a rotation, as
   * `kid:secret` entries; the first signs (demo, `tidings-server token`), all verify.
   * Exclusive with TIDINGS_SUBSCRIBER_SECRET. Read with subscriberKeyring().
   */
  subscriberSecrets: string[];
  /** TIDINGS_PUBLISHER_KEY: bearer key for POST /v1/publish. Generated and printed when unset. */
  publisherKey: string;
  /** TIDINGS_PUBLISHER_KEYS: several accepted publisher keys (a rotation). Exclusive with TIDINGS_PUBLISHER_KEY. */
  publisherKeys: string[];
  /** TIDINGS_ALLOWED_ORIGINS: allowed Origin values; empty = any. */
  allowedOrigins: string[];
  /** TIDINGS_HISTORY: events kept per channel. */
  history: number;
  /** TIDINGS_PING_MS: server ping interval (silence on the server side before a ping). */
  pingMs: number;
  /** TIDINGS_PONG_GRACE_MS: how long after a ping the server waits for a pong before closing 4408. */
  pongGraceMs: number;
  /** TIDINGS_HELLO_TIMEOUT_MS: time from 101 to `hello` before closing 4408 (slowloris). */
  helloTimeoutMs: number;
  /** TIDINGS_MAX_CONNECTIONS: open WebSocket connections; above it upgrades get 503. */
  maxConnections: number;
  /** TIDINGS_MAX_HANDSHAKES: upgraded connections between the 101 and `welcome` (waiting for hello, subscribing); above it 503. */
  maxHandshakes: number;
  /** TIDINGS_MAX_PENDING_HEADS: accepted sockets whose request head is not complete yet; past it the oldest is dropped. */
  maxPendingHeads: number;
  /** TIDINGS_HEADS_PER_SOURCE: pending heads from one remote address; past it new sockets from it are closed. */
  headsPerSource: number;
  /** TIDINGS_HEAD_TIMEOUT_UNDER_LOAD_MS: head deadline once pending heads pass half of maxPendingHeads. */
  headTimeoutUnderLoadMs: number;
  /** TIDINGS_MAX_SOCKETS: open sockets on the port, WebSocket and HTTP together; past it new ones are closed at once. */
  maxSockets: number;
  /** TIDINGS_LISTEN_BACKLOG: connections the kernel queues before accept (capped by net.core.somaxconn). */
  listenBacklog: number;
  /** TIDINGS_MAX_HEAD_BYTES: largest upgrade request head; over it 431. */
  maxHeadBytes: number;
  /** TIDINGS_MAX_MESSAGE_BYTES: largest inbound WebSocket message (1009) and publish `data` (413). */
  maxMessageBytes: number;
  /** TIDINGS_MAX_OUTBOUND_BYTES: bytes queued unsent to one client before it is closed 1013 (slow consumer). */
  maxOutboundBytes: number;
  /** TIDINGS_MAX_CHANNELS: channels in one hello or poll. */
  maxChannels: number;
  /** TIDINGS_MAX_BATCH: events in one batch publish. */
  maxBatch: number;
  /** TIDINGS_FANOUT_SLICE: socket writes per fan-out slice before yielding to the event loop. */
  fanoutSlice: number;
  /** TIDINGS_FANOUT_SLICE_MS: time per fan-out slice before yielding (whichever of the two limits comes first). */
  fanoutSliceMs: number;
  /** TIDINGS_MAX_FANOUT_LAG_MS: delivery lag of the fan-out queue past which publishes get 503 fanout_behind. */
  maxFanoutLagMs: number;
  /** TIDINGS_MAX_FANOUT_QUEUE_BYTES: frame bytes waiting in the fan-out queue past which publishes get 503 fanout_behind. */
  maxFanoutQueueBytes: number;
  /** TIDINGS_MAX_FRAGMENTS: frames in one fragmented inbound message; past it the connection is closed 1009. */
  maxFragments: number;
  /** TIDINGS_MAX_DATA_DEPTH: nesting of arrays/objects in published `data`; deeper is 400 (same on every bus). */
  maxDataDepth: number;
  /** TIDINGS_REPLAY_WINDOW_BYTES: replay bytes written ahead of what the client has taken. */
  replayWindowBytes: number;
  /** TIDINGS_MAX_REPLAY_BYTES: replay bytes read and not yet written, over all connections; past it hello gets 1013. */
  maxReplayBytes: number;
  /** TIDINGS_FANOUT_BATCH: queued events of one channel written to a connection in one write (1: one write per event). */
  fanoutBatch: number;
  /** TIDINGS_POLL_INTERVAL_S: X-Poll-Interval under normal load (raised under load). */
  pollIntervalS: number;
  /** TIDINGS_MAX_POLL_WAIT_S: cap on Prefer: wait (PROTOCOL.md: N <= 30). */
  maxPollWaitS: number;
  /** TIDINGS_MAX_HELD_POLLS: long-polls held at once; above it 503 + Retry-After. */
  maxHeldPolls: number;
  /** TIDINGS_MAX_HELD_POLLS_PER_SUB: long-polls held at once for one token subject (`sub`); past it 429. */
  maxHeldPollsPerSub: number;
  /** TIDINGS_MAX_HELD_POLLS_PER_SOURCE: long-polls held at once from one remote address; past it 429. */
  maxHeldPollsPerSource: number;
  /** TIDINGS_DRAIN_WINDOW_MS: the 1012 reconnect window announced on SIGTERM/SIGINT. */
  drainWindowMs: number;
  /**
   * TIDINGS_DRAIN_LISTEN_MS: after SIGTERM, how long the listener stays open answering
   * 503 (probes, polls, publishes, upgrades) before it closes, so load balancers
   * see "draining" instead of "connection refused" and take the node out of rotation.
   */
  drainListenMs: number;
  /** TIDINGS_READY_MAX_LAG_MS: event-loop delay (p99) past which /readyz answers 503. */
  readyMaxLagMs: number;
  /** TIDINGS_REDIS_URL: Redis bus and history for several nodes; empty = in-memory bus. */
  redisUrl: string;
  /** TIDINGS_REDIS_CLUSTER: Redis Cluster seed nodes (host:port, comma-separated); exclusive with redisUrl. */
  redisCluster: string[];
  /** TIDINGS_PUBLISH_TIMEOUT_MS: a publish not stored (cluster: and acknowledged by a replica) within this answers 503. */
  publishTimeoutMs: number;
  /**
   * TIDINGS_REDIS_WATCH_GATHER_MS: Redis subscriptions of new channels start
   * at most once per this many ms; those watched meanwhile wait and share one
   * SSUBSCRIBE and one head read (0: as soon as the previous batch is done).
   */
  redisWatchGatherMs: number;
  /** TIDINGS_WORKERS / --workers: processes sharing the port (needs Redis when > 1). */
  workers: number;
  /** TIDINGS_WORKER_ACCEPT: `reuseport` (each worker accepts on its own SO_REUSEPORT socket) or `primary` (node:cluster hand-off). */
  workerAccept: 'reuseport' | 'primary';
  /** TIDINGS_WORKER_SEMI_SPACE_MB: V8 young-generation semi-space of each worker, MB (0: V8's default, 16 MB on 64-bit). */
  workerSemiSpaceMb: number;
  /** TIDINGS_WORKER_OPTIMIZE_FOR_SIZE: run workers with V8's --optimize-for-size (a tighter heap for idle connections, a little more CPU per connect). */
  workerOptimizeForSize: boolean;
  /** TIDINGS_HISTORY_TTL_S: a channel's Redis history expires after this long without a publish (0: never). */
  historyTtlS: number;
  /** TIDINGS_METRICS_PORT: serve /metrics on this port only (not on the public port); 0 = on the main port. */
  metricsPort: number;
  /** TIDINGS_METRICS_HOST: listen address of the metrics port; empty = TIDINGS_HOST. */
  metricsHost: string;
  /**
   * TIDINGS_TRUST_PROXY: the server is behind a proxy that sets X-Forwarded-For;
   * the client address in logs is then the address that proxy saw (its last hop).
   * Off: the socket's peer address, whatever the headers say (they are forgeable).
   */
  trustProxy: boolean;
  /** TIDINGS_DEMO / --demo: serve the demo page and its demo-only routes. Off by default. */
  demo: boolean;
  /** TIDINGS_LOG_LEVEL: pino level. */
  logLevel: string;
}

/** Files one process may open (the soft RLIMIT_NOFILE), from /proc on Linux; null where unknown. */
export function openFileLimit(): number | null {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/**
 * Default TIDINGS_MAX_SOCKETS: the fd limit less 1000 left for Redis, logs and
 * the sockets of accepted-then-closed connections still being torn down, so the
 * process never hits EMFILE (accept then fails silently in a loop). Half the
 * limit when it is small; no cap when it cannot be read.
 */
export function defaultMaxSockets(limit: number | null = openFileLimit()): number {
  if (limit === null) return 0;
  return limit > 2000 ? limit - 1000 : Math.floor(limit / 2);
}

export const DEFAULTS: Config = {
  port: 8080,
  host: '127.0.0.1',
  subscriberSecret: '',
  subscriberSecrets: [],
  publisherKey: '',
  publisherKeys: [],
  allowedOrigins: [],
  history: 1000,
  pingMs: 25_000,
  pongGraceMs: 10_000,
  helloTimeoutMs: 10_000,
  maxConnections: 100_000,
  maxHandshakes: 1_000,
  maxPendingHeads: 2_000,
  headsPerSource: 100,
  headTimeoutUnderLoadMs: 1_000,
  maxSockets: defaultMaxSockets(),
  listenBacklog: 4096,
  maxHeadBytes: 8 * 1024,
  maxMessageBytes: 64 * 1024,
  maxOutboundBytes: 1024 * 1024,
  maxChannels: 64,
  maxBatch: 100,
  fanoutSlice: 2_000,
  fanoutSliceMs: 4,
  maxFanoutLagMs: 2_000,
  maxFanoutQueueBytes: 64 * 1024 * 1024,
  maxFragments: 128,
  maxDataDepth: 100,
  replayWindowBytes: 64 * 1024,
  maxReplayBytes: 64 * 1024 * 1024,
  fanoutBatch: 32,
  pollIntervalS: 5,
  maxPollWaitS: 30,
  maxHeldPolls: 10_000,
  maxHeldPollsPerSub: 32,
  maxHeldPollsPerSource: 1_000,
  drainWindowMs: 10_000,
  drainListenMs: 5_000,
  readyMaxLagMs: 1_000,
  redisUrl: '',
  redisCluster: [],
  publishTimeoutMs: 2_000,
  redisWatchGatherMs: 25,
  workers: 1,
  // SO_REUSEPORT is Linux's (and Node's reusePort option only works there and on a few BSDs).
  workerAccept: process.platform === 'linux' ? 'reuseport' : 'primary',
  workerSemiSpaceMb: 1,
  workerOptimizeForSize: true,
  historyTtlS: 7 * 24 * 3600,
  metricsPort: 0,
  metricsHost: '',
  trustProxy: false,
  demo: false,
  logLevel: 'info',
};

type Kind = 'int' | 'string' | 'list' | 'bool';
/** key -> [env name, flag name, kind, help]. */
export const SETTINGS: { [K in keyof Config]: [string, string, Kind, string] } = {
  port: ['TIDINGS_PORT', 'port', 'int', 'listen port (0: any free port)'],
  host: ['TIDINGS_HOST', 'host', 'string', 'listen address'],
  subscriberSecret: ['TIDINGS_SUBSCRIBER_SECRET', 'subscriber-secret', 'string', 'HS256 key for subscriber tokens (generated and printed when unset)'],
  subscriberSecrets: ['TIDINGS_SUBSCRIBER_SECRETS', 'subscriber-secrets', 'list', 'kid:secret,kid:secret... for a rotation (the first signs, all verify)'],
  publisherKey: ['TIDINGS_PUBLISHER_KEY', 'publisher-key', 'string', 'bearer key for POST /v1/publish (generated and printed when unset)'],
  publisherKeys: ['TIDINGS_PUBLISHER_KEYS', 'publisher-keys', 'list', 'several accepted publisher keys, comma-separated (a rotation)'],
  allowedOrigins: ['TIDINGS_ALLOWED_ORIGINS', 'allowed-origins', 'list', 'comma-separated allowed Origin values (empty: any)'],
  history: ['TIDINGS_HISTORY', 'history', 'int', 'events kept per channel'],
  pingMs: ['TIDINGS_PING_MS', 'ping-ms', 'int', 'ping interval in ms'],
  pongGraceMs: ['TIDINGS_PONG_GRACE_MS', 'pong-grace-ms', 'int', 'ms to wait for a pong before closing 4408'],
  helloTimeoutMs: ['TIDINGS_HELLO_TIMEOUT_MS', 'hello-timeout-ms', 'int', 'ms from 101 to hello before closing 4408'],
  maxConnections: ['TIDINGS_MAX_CONNECTIONS', 'max-connections', 'int', 'open WebSocket connections; above it upgrades get 503'],
  maxHandshakes: ['TIDINGS_MAX_HANDSHAKES', 'max-handshakes', 'int', 'upgraded connections awaiting hello/welcome; above it 503'],
  maxPendingHeads: ['TIDINGS_MAX_PENDING_HEADS', 'max-pending-heads', 'int', 'sockets whose request head is incomplete; past it the oldest is dropped'],
  headsPerSource: ['TIDINGS_HEADS_PER_SOURCE', 'heads-per-source', 'int', 'incomplete request heads per remote address; past it new sockets are closed'],
  headTimeoutUnderLoadMs: ['TIDINGS_HEAD_TIMEOUT_UNDER_LOAD_MS', 'head-timeout-under-load-ms', 'int', 'head deadline while pending heads are over half their cap'],
  maxSockets: ['TIDINGS_MAX_SOCKETS', 'max-sockets', 'int', 'open sockets (WebSocket and HTTP); past it new ones are closed (0: no cap)'],
  listenBacklog: ['TIDINGS_LISTEN_BACKLOG', 'listen-backlog', 'int', 'kernel accept queue length (capped by net.core.somaxconn)'],
  maxHeadBytes: ['TIDINGS_MAX_HEAD_BYTES', 'max-head-bytes', 'int', 'largest upgrade request head (431 past it)'],
  maxMessageBytes: ['TIDINGS_MAX_MESSAGE_BYTES', 'max-message-bytes', 'int', 'largest inbound message (1009) and publish data (413)'],
  maxOutboundBytes: ['TIDINGS_MAX_OUTBOUND_BYTES', 'max-outbound-bytes', 'int', 'unsent bytes per client before closing 1013'],
  maxChannels: ['TIDINGS_MAX_CHANNELS', 'max-channels', 'int', 'channels per hello or poll'],
  maxBatch: ['TIDINGS_MAX_BATCH', 'max-batch', 'int', 'events per batch publish'],
  fanoutSlice: ['TIDINGS_FANOUT_SLICE', 'fanout-slice', 'int', 'writes per fan-out slice before yielding'],
  fanoutSliceMs: ['TIDINGS_FANOUT_SLICE_MS', 'fanout-slice-ms', 'int', 'ms per fan-out slice before yielding'],
  maxFanoutLagMs: ['TIDINGS_MAX_FANOUT_LAG_MS', 'max-fanout-lag-ms', 'int', 'fan-out delivery lag past which publishes get 503'],
  maxFanoutQueueBytes: ['TIDINGS_MAX_FANOUT_QUEUE_BYTES', 'max-fanout-queue-bytes', 'int', 'fan-out queue bytes past which publishes get 503'],
  maxFragments: ['TIDINGS_MAX_FRAGMENTS', 'max-fragments', 'int', 'frames per fragmented inbound message (1009 past it)'],
  maxDataDepth: ['TIDINGS_MAX_DATA_DEPTH', 'max-data-depth', 'int', 'nesting depth of published data (400 past it)'],
  replayWindowBytes: ['TIDINGS_REPLAY_WINDOW_BYTES', 'replay-window-bytes', 'int', 'replay bytes written ahead of the client per connection'],
  maxReplayBytes: ['TIDINGS_MAX_REPLAY_BYTES', 'max-replay-bytes', 'int', 'replay bytes held over all connections (1013 past it)'],
  fanoutBatch: ['TIDINGS_FANOUT_BATCH', 'fanout-batch', 'int', 'queued events of a channel sent to a connection in one write (1: off)'],
  pollIntervalS: ['TIDINGS_POLL_INTERVAL_S', 'poll-interval-s', 'int', 'X-Poll-Interval under normal load'],
  maxPollWaitS: ['TIDINGS_MAX_POLL_WAIT_S', 'max-poll-wait-s', 'int', 'cap on Prefer: wait'],
  maxHeldPolls: ['TIDINGS_MAX_HELD_POLLS', 'max-held-polls', 'int', 'long-polls held at once (503 past it)'],
  maxHeldPollsPerSub: ['TIDINGS_MAX_HELD_POLLS_PER_SUB', 'max-held-polls-per-sub', 'int', 'long-polls held per token subject (429 past it)'],
  maxHeldPollsPerSource: ['TIDINGS_MAX_HELD_POLLS_PER_SOURCE', 'max-held-polls-per-source', 'int', 'long-polls held per remote address (429 past it)'],
  drainWindowMs: ['TIDINGS_DRAIN_WINDOW_MS', 'drain-window-ms', 'int', 'reconnect window announced with 1012 on drain'],
  drainListenMs: ['TIDINGS_DRAIN_LISTEN_MS', 'drain-listen-ms', 'int', 'ms the listener keeps answering 503 after SIGTERM before it closes'],
  readyMaxLagMs: ['TIDINGS_READY_MAX_LAG_MS', 'ready-max-lag-ms', 'int', 'event-loop delay (p99, ms) past which /readyz answers 503'],
  redisUrl: ['TIDINGS_REDIS_URL', 'redis-url', 'string', 'Redis URL for several nodes (empty: in-memory bus)'],
  redisCluster: ['TIDINGS_REDIS_CLUSTER', 'redis-cluster', 'list', 'Redis Cluster seed nodes, host:port,host:port (instead of --redis-url)'],
  publishTimeoutMs: ['TIDINGS_PUBLISH_TIMEOUT_MS', 'publish-timeout-ms', 'int', 'ms for a publish to be stored (and replicated on a cluster) before 503'],
  redisWatchGatherMs: ['TIDINGS_REDIS_WATCH_GATHER_MS', 'redis-watch-gather-ms', 'int', 'Redis subscriptions of new channels start at most once per this many ms, batched (0: no wait)'],
  workers: ['TIDINGS_WORKERS', 'workers', 'int', 'worker processes sharing the port (needs Redis when > 1)'],
  workerAccept: ['TIDINGS_WORKER_ACCEPT', 'worker-accept', 'string', 'how workers get connections: reuseport (own SO_REUSEPORT socket each) or primary (node:cluster hand-off)'],
  workerSemiSpaceMb: ['TIDINGS_WORKER_SEMI_SPACE_MB', 'worker-semi-space-mb', 'int', 'V8 young-generation semi-space per worker in MB (0: V8 default)'],
  workerOptimizeForSize: ['TIDINGS_WORKER_OPTIMIZE_FOR_SIZE', 'worker-optimize-for-size', 'bool', 'run workers with V8 --optimize-for-size (less memory per idle connection, more CPU per connect)'],
  historyTtlS: ['TIDINGS_HISTORY_TTL_S', 'history-ttl-s', 'int', 'Redis history of a channel expires after this many seconds without a publish (0: never)'],
  metricsPort: ['TIDINGS_METRICS_PORT', 'metrics-port', 'int', 'serve /metrics on this port only (0: on the main port)'],
  metricsHost: ['TIDINGS_METRICS_HOST', 'metrics-host', 'string', 'listen address of the metrics port (empty: TIDINGS_HOST)'],
  trustProxy: ['TIDINGS_TRUST_PROXY', 'trust-proxy', 'bool', 'take the client address from X-Forwarded-For (set by your proxy)'],
  demo: ['TIDINGS_DEMO', 'demo', 'bool', 'serve the demo page and demo-only routes'],
  logLevel: ['TIDINGS_LOG_LEVEL', 'log-level', 'string', 'pino log level'],
};

export { ConfigError };

function parseValue(kind: Kind, raw: string, name: string): unknown {
  switch (kind) {
    case 'int': {
      if (!/^\d+$/.test(raw.trim())) throw new ConfigError(`${name} must be a non-negative integer, got "${raw}"`);
      return Number(raw.trim());
    }
    case 'bool':
      if (/^(1|true|yes|on|)$/i.test(raw.trim())) return true;
      if (/^(0|false|no|off)$/i.test(raw.trim())) return false;
      throw new ConfigError(`${name} must be true or false, got "${raw}"`);
    case 'list':
      return raw.split(',').map((s) => s.trim()).filter(Boolean);
    case 'string':
      return raw;
  }
}

export function helpText(): string {
  const lines = ['Usage: tidings-server [--flag value ...]', '', 'Every flag mirrors an environment variable; flags win.', ''];
  for (const key of Object.keys(SETTINGS) as (keyof Config)[]) {
    const [env, flag, kind, help] = SETTINGS[key];
    const def = DEFAULTS[key];
    const shown = Array.isArray(def) ? def.join(',') || '(empty)' : def === '' ? '(empty)' : String(def);
    lines.push(`  --${flag}${kind === 'bool' ? '' : ' <' + kind + '>'}`.padEnd(34) + `${env}`);
    lines.push(`      ${help} [default: ${shown}]`);
  }
  lines.push('  --help                          print this and exit');
  return lines.join('\n');
}

/** Settings that may come from a file instead (NAME_FILE): secrets, as container secrets are mounted. */
export const FILE_SETTINGS = [
  'TIDINGS_SUBSCRIBER_SECRET', 'TIDINGS_SUBSCRIBER_SECRETS', 'TIDINGS_PUBLISHER_KEY', 'TIDINGS_PUBLISHER_KEYS', 'TIDINGS_REDIS_URL',
] as const;

/**
 * Replace each NAME_FILE by NAME, read from that file (surrounding whitespace and the
 * final newline dropped; for the lists, one entry per line works too).
 */
export function resolveFileSettings(
  env: Record<string, string | undefined>,
  read: (path: string) => string = (p) => readFileSync(p, 'utf8'),
): Record<string, string | undefined> {
  const out = { ...env };
  for (const name of FILE_SETTINGS) {
    const file = env[`${name}_FILE`];
    if (file === undefined || file === '') continue;
    if (env[name] !== undefined && env[name] !== '') throw new ConfigError(`set ${name} or ${name}_FILE, not both`);
    let text: string;
    try {
      text = read(file);
    } catch (err) {
      throw new ConfigError(`${name}_FILE: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    text = text.trim();
    if (name.endsWith('S')) text = text.split(/\s*[\n,]\s*/).filter(Boolean).join(',');
    if (text === '') throw new ConfigError(`${name}_FILE: ${file} is empty`);
    out[name] = text;
  }
  return out;
}

const KID = /^[A-Za-z0-9._-]{1,64}$/;

/** Parse TIDINGS_SUBSCRIBER_SECRETS entries (`kid:secret`). */
export function parseSubscriberSecrets(entries: readonly string[]): SubscriberKey[] {
  const ring: SubscriberKey[] = [];
  for (const e of entries) {
    const colon = e.indexOf(':');
    const kid = colon < 0 ? '' : e.slice(0, colon);
    if (!KID.test(kid)) {
      throw new ConfigError('TIDINGS_SUBSCRIBER_SECRETS: each entry is kid:secret, the kid 1-64 of A-Z a-z 0-9 . _ - (e.g. 2026-12:...); an entry has no valid kid');
    }
    if (ring.some((k) => k.kid === kid)) throw new ConfigError(`TIDINGS_SUBSCRIBER_SECRETS: kid "${kid}" appears twice`);
    ring.push({ kid, secret: e.slice(colon + 1) });
  }
  return ring;
}

const rings = new WeakMap<Config, readonly SubscriberKey[]>();

/** Every accepted subscriber secret, the signing one first. */
export function subscriberKeyring(config: Config): readonly SubscriberKey[] {
  let ring = rings.get(config);
  if (ring === undefined) {
    ring = Object.freeze(config.subscriberSecrets.length > 0
      ? parseSubscriberSecrets(config.subscriberSecrets)
      : [{ kid: null, secret: config.subscriberSecret }]);
    rings.set(config, ring);
  }
  return ring;
}

/** Every accepted publisher key. */
export function publisherKeysOf(config: Config): readonly string[] {
  return config.publisherKeys.length > 0 ? config.publisherKeys : [config.publisherKey];
}

/**
 * Build the config from env and argv (flags win). Secrets left empty are generated
 * and reported in `generated` so main can print them once (never logged elsewhere).
 * `warnings` are mistakes that do not stop the server; main logs them.
 */
export function loadConfig(
  rawEnv: Record<string, string | undefined> = process.env,
  argv: string[] = process.argv.slice(2),
  readFile?: (path: string) => string,
): { config: Config; generated: ('subscriberSecret' | 'publisherKey')[]; help: boolean; warnings: string[] } {
  const env = resolveFileSettings(rawEnv, readFile);
  const config: Config = { ...DEFAULTS, allowedOrigins: [...DEFAULTS.allowedOrigins] };
  const byFlag = new Map<string, keyof Config>();
  for (const key of Object.keys(SETTINGS) as (keyof Config)[]) {
    const [envName, flag, kind] = SETTINGS[key];
    byFlag.set(flag, key);
    const raw = env[envName];
    if (raw !== undefined && raw !== '') (config as unknown as Record<string, unknown>)[key] = parseValue(kind, raw, envName);
  }
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--help' || arg === '-h') { help = true; continue; }
    if (!arg.startsWith('--')) throw new ConfigError(`unexpected argument "${arg}" (see --help)`);
    const eq = arg.indexOf('=');
    const flag = arg.slice(2, eq < 0 ? undefined : eq);
    const key = byFlag.get(flag);
    if (!key) throw new ConfigError(`unknown flag --${flag} (see --help)`);
    const kind = SETTINGS[key][2];
    let raw: string;
    if (eq >= 0) raw = arg.slice(eq + 1);
    else if (kind === 'bool' && (argv[i + 1] === undefined || argv[i + 1]!.startsWith('--'))) raw = 'true';
    else if (argv[i + 1] === undefined) throw new ConfigError(`--${flag} needs a value`);
    else raw = argv[++i]!;
    (config as unknown as Record<string, unknown>)[key] = parseValue(kind, raw, `--${flag}`);
  }
  if (config.port > 65535) throw new ConfigError(`port must be at most 65535, got ${config.port}`);
  if (config.metricsPort > 65535) throw new ConfigError(`metrics-port must be at most 65535, got ${config.metricsPort}`);
  if (config.metricsPort !== 0 && config.metricsPort === config.port) throw new ConfigError('TIDINGS_METRICS_PORT must differ from TIDINGS_PORT (0 serves /metrics on the main port)');
  if (config.history < 1) throw new ConfigError('history must be at least 1');
  if (config.pingMs < 100) throw new ConfigError('ping-ms must be at least 100');
  if (config.maxPollWaitS > 30) throw new ConfigError('max-poll-wait-s must be at most 30 (PROTOCOL.md)');
  if (config.maxFragments < 1) throw new ConfigError('max-fragments must be at least 1');
  if (config.maxDataDepth < 1) throw new ConfigError('max-data-depth must be at least 1');
  if (config.replayWindowBytes < 1) throw new ConfigError('replay-window-bytes must be at least 1');
  if (config.listenBacklog < 1) throw new ConfigError('listen-backlog must be at least 1');
  if (config.workers < 1) throw new ConfigError('workers must be at least 1');
  if (config.workerAccept !== 'reuseport' && config.workerAccept !== 'primary') {
    throw new ConfigError(`worker-accept must be reuseport or primary, got "${config.workerAccept}"`);
  }
  if (config.fanoutBatch < 1) throw new ConfigError('fanout-batch must be at least 1 (1: one write per event)');
  if (config.workerSemiSpaceMb > 256) throw new ConfigError('worker-semi-space-mb must be at most 256');
  if (config.redisUrl && config.redisCluster.length > 0) {
    throw new ConfigError('TIDINGS_REDIS_URL and TIDINGS_REDIS_CLUSTER are both set: use one (the URL for a single Redis, the seed list for a Redis Cluster)');
  }
  for (const seed of config.redisCluster) {
    try { parseSeed(seed); } catch (err) { throw new ConfigError(`TIDINGS_REDIS_CLUSTER: ${(err as Error).message}`); }
  }
  if (config.publishTimeoutMs < 1) throw new ConfigError('publish-timeout-ms must be at least 1');
  if (config.redisWatchGatherMs < 0 || config.redisWatchGatherMs > 1_000) throw new ConfigError('redis-watch-gather-ms must be between 0 and 1000');
  if (config.workers > 1 && !config.redisUrl && config.redisCluster.length === 0) throw new ConfigError('--workers > 1 needs TIDINGS_REDIS_URL or TIDINGS_REDIS_CLUSTER: workers share events through Redis');
  const warnings: string[] = [];
  const generated: ('subscriberSecret' | 'publisherKey')[] = [];
  if (config.subscriberSecrets.length > 0) {
    if (config.subscriberSecret) throw new ConfigError('set TIDINGS_SUBSCRIBER_SECRET or TIDINGS_SUBSCRIBER_SECRETS, not both (during a rotation, list every secret in TIDINGS_SUBSCRIBER_SECRETS)');
    const ring = parseSubscriberSecrets(config.subscriberSecrets);
    for (const k of ring) warnings.push(...checkSecretLength(k.secret, `TIDINGS_SUBSCRIBER_SECRETS (kid ${k.kid})`));
    config.subscriberSecret = ring[0]!.secret;
  } else if (config.subscriberSecret) {
    warnings.push(...checkSecretLength(config.subscriberSecret, 'TIDINGS_SUBSCRIBER_SECRET'));
  } else {
    config.subscriberSecret = randomBytes(32).toString('base64url');
    generated.push('subscriberSecret');
  }
  if (config.publisherKeys.length > 0) {
    if (config.publisherKey) throw new ConfigError('set TIDINGS_PUBLISHER_KEY or TIDINGS_PUBLISHER_KEYS, not both (during a rotation, list every key in TIDINGS_PUBLISHER_KEYS)');
    config.publisherKeys.forEach((k, i) => warnings.push(...checkPublisherKey(k, `TIDINGS_PUBLISHER_KEYS (entry ${i + 1})`)));
    config.publisherKey = config.publisherKeys[0]!;
  } else if (config.publisherKey) {
    warnings.push(...checkPublisherKey(config.publisherKey, 'TIDINGS_PUBLISHER_KEY'));
  } else {
    config.publisherKey = randomBytes(24).toString('base64url');
    generated.push('publisherKey');
  }
  const origins = normalizeAllowedOrigins(config.allowedOrigins);
  config.allowedOrigins = origins.origins;
  warnings.push(...origins.warnings);
  return { config, generated, help, warnings };
}
