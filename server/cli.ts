// Subcommands of tidings-server besides serving: `token` (mint a subscriber
// token with the configured secret), `publish` (through a running server's
// API) and `--version`. Arguments by node:util.parseArgs; secrets come from the
// same variables (and *_FILE) as the server's, and are never printed.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, subscriberKeyring } from './config.js';
import { isChannelName } from './pubsub/channels.js';

/** Exit statuses: 0 ok, 1 the operation failed (server answered an error), 2 usage or configuration. */
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

export interface CliIO {
  out(text: string): void;
  err(text: string): void;
  env: Record<string, string | undefined>;
  fetch: typeof fetch;
  now(): number;
}

const defaultIO = (): CliIO => ({
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
  env: process.env,
  fetch: (i, init) => fetch(i, init),
  now: Date.now,
});

export const TOKEN_USAGE = `Usage: tidings-server token --sub ID --channel C [--channel C ...] [--ttl 1h]
  Prints a subscriber token signed with TIDINGS_SUBSCRIBER_SECRET (or the first of
  TIDINGS_SUBSCRIBER_SECRETS, with its kid; *_FILE variants too).
  --ttl: seconds, or a number with s, m, h or d (default 1h).`;

export const PUBLISH_USAGE = `Usage: tidings-server publish CHANNEL JSON [--url URL]
  Publishes one event through a running server's POST /v1/publish with
  TIDINGS_PUBLISHER_KEY (or the first of TIDINGS_PUBLISHER_KEYS; *_FILE too).
  --url: the server (default TIDINGS_URL, else http://TIDINGS_HOST:TIDINGS_PORT).`;

/** What --help adds after the server's flags. */
export const SUBCOMMANDS_HELP = `Subcommands:
  tidings-server token --sub ID --channel C [--channel C ...] [--ttl 1h]
      print a subscriber token signed with the configured secret
  tidings-server publish CHANNEL JSON [--url URL]
      publish one event through a running server with the configured publisher key
  tidings-server --version
      print the version

Secrets may come from files: TIDINGS_SUBSCRIBER_SECRET_FILE, TIDINGS_SUBSCRIBER_SECRETS_FILE,
TIDINGS_PUBLISHER_KEY_FILE, TIDINGS_PUBLISHER_KEYS_FILE, TIDINGS_REDIS_URL_FILE.
Probes: GET /livez (liveness), GET /readyz (readiness), GET /healthz. Deployment: docs/deploy.md.`;

/** Run a subcommand if argv names one; its exit status, or null when argv is for the server. */
export async function runSubcommand(argv: string[], io: CliIO = defaultIO()): Promise<number | null> {
  const [first, ...rest] = argv;
  try {
    if (first === '--version' || first === '-v' || first === 'version') {
      io.out(`tidings-server ${version()}\n`);
      return 0;
    }
    if (first === 'token') return await token(rest, io);
    if (first === 'publish') return await publish(rest, io);
    return null;
  } catch (err) {
    if (err instanceof ConfigError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      io.err(`tidings-server ${first}: ${(err as Error).message}\n`);
      return EXIT_USAGE;
    }
    throw err;
  }
}

/** The package's version, from the package.json above this file (server/ in dev, dist/server/ when built). */
export function version(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    try {
      const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name?.startsWith('tidings') && pkg.version) return pkg.version;
    } catch { /* not here: one level up */ }
    dir = path.dirname(dir);
  }
  return 'unknown';
}

/** "3600", "90s", "30m", "1h", "7d" -> seconds. */
export function parseTtl(raw: string): number {
  const m = /^(\d+)([smhd]?)$/.exec(raw.trim());
  if (!m) throw new ConfigError(`--ttl must be seconds or a number with s, m, h or d (e.g. 1h), got "${raw}"`);
  const n = Number(m[1]) * { '': 1, s: 1, m: 60, h: 3600, d: 86_400 }[m[2] as '' | 's' | 'm' | 'h' | 'd'];
  if (n < 1) throw new ConfigError('--ttl must be at least 1 second');
  return n;
}

/** Server settings from the environment only (flags here are the subcommand's). */
function serverConfig(io: CliIO) {
  return loadConfig(io.env, []);
}

async function token(argv: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true,
    options: { sub: { type: 'string' }, channel: { type: 'string', multiple: true }, ttl: { type: 'string', default: '1h' }, help: { type: 'boolean' } },
  });
  if (values.help) { io.out(TOKEN_USAGE + '\n'); return 0; }
  if (positionals.length > 0) throw new ConfigError(`unexpected argument "${positionals[0]}"\n${TOKEN_USAGE}`);
  if (!values.sub) throw new ConfigError(`--sub is required\n${TOKEN_USAGE}`);
  const channels = values.channel ?? [];
  if (channels.length === 0) throw new ConfigError(`at least one --channel is required\n${TOKEN_USAGE}`);
  for (const c of channels) if (!isChannelName(c)) throw new ConfigError(`bad channel name "${c}": must match ^[A-Za-z0-9:_.\\-]{1,128}$`);
  const ttlSeconds = parseTtl(values.ttl!);
  const { config, generated } = serverConfig(io);
  if (generated.includes('subscriberSecret')) {
    throw new ConfigError('no subscriber secret configured: set TIDINGS_SUBSCRIBER_SECRET (or TIDINGS_SUBSCRIBER_SECRETS, or a *_FILE variant) as the server has it');
  }
  const { signSubscriberToken } = await import('./auth/tokens.js');
  io.out(await signSubscriberToken(subscriberKeyring(config), { sub: values.sub, ch: channels, ttlSeconds }, io.now()) + '\n');
  return 0;
}

async function publish(argv: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true, options: { url: { type: 'string' }, help: { type: 'boolean' } },
  });
  if (values.help) { io.out(PUBLISH_USAGE + '\n'); return 0; }
  if (positionals.length !== 2) throw new ConfigError(`expected CHANNEL and JSON\n${PUBLISH_USAGE}`);
  const [channel, json] = positionals as [string, string];
  if (!isChannelName(channel)) throw new ConfigError(`bad channel name "${channel}": must match ^[A-Za-z0-9:_.\\-]{1,128}$`);
  let data: unknown;
  try {
    data = JSON.parse(json);
  } catch (err) {
    throw new ConfigError(`JSON: ${(err as Error).message} (quote it for the shell: '{"unread":3}')`);
  }
  const { config, generated } = serverConfig(io);
  if (generated.includes('publisherKey')) {
    throw new ConfigError('no publisher key configured: set TIDINGS_PUBLISHER_KEY (or TIDINGS_PUBLISHER_KEYS, or a *_FILE variant) as the server has it');
  }
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  const base = (values.url ?? io.env.TIDINGS_URL ?? `http://${host}:${config.port}`).replace(/\/+$/, '');
  let res: Response;
  try {
    res = await io.fetch(`${base}/v1/publish`, {
      method: 'POST',
      headers: { authorization: `Bearer ${config.publisherKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ channel, data }),
    });
  } catch (err) {
    io.err(`tidings-server publish: cannot reach ${base}: ${(err as Error).cause ?? (err as Error).message}\n`);
    return EXIT_FAILED;
  }
  const text = await res.text();
  if (!res.ok) {
    io.err(`tidings-server publish: ${res.status} ${text.trim()}\n`);
    return EXIT_FAILED;
  }
  io.out(text.trim() + '\n');
  return 0;
}
