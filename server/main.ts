#!/usr/bin/env node
// The CLI: config from env and flags, generated secrets printed once (stderr),
// one "listening on" line, and a drain on SIGTERM/SIGINT (a second signal exits
// at once). `token`, `publish` and `--version` are subcommands (cli.ts).
//
// The cluster primary imports only config.ts and cluster.ts: the server (pino,
// prom-client, ioredis, jose) is loaded on demand by whichever process serves,
// so the primary stays at a bare Node process's memory.
import { ConfigError, helpText, loadConfig, publisherKeysOf, subscriberKeyring, type Config } from './config.js';
import { isWorker, listenOptions, reportListening, runPrimary } from './cluster.js';
import { runSubcommand, SUBCOMMANDS_HELP, version } from './cli.js';

/** Exit status for a configuration error (the usage convention of sysexits-less CLIs). */
export const EXIT_CONFIG = 2;

function printSecrets(config: Config, generated: ('subscriberSecret' | 'publisherKey')[]): void {
  if (generated.length === 0) return;
  // stderr, never the logger or stdout: a secret must not end up in log storage,
  // and stdout carries the JSON log stream.
  const lines = ['', '------------------------------------------------------------------',
    'Generated secrets for this run only (set the variables to keep them):'];
  if (generated.includes('subscriberSecret')) lines.push(`  TIDINGS_SUBSCRIBER_SECRET=${config.subscriberSecret}`);
  if (generated.includes('publisherKey')) lines.push(`  TIDINGS_PUBLISHER_KEY=${config.publisherKey}`);
  lines.push('------------------------------------------------------------------', '');
  process.stderr.write(lines.join('\n') + '\n');
  // Workers (--workers) inherit the environment: they must verify with the same secrets.
  if (generated.includes('subscriberSecret')) process.env.TIDINGS_SUBSCRIBER_SECRET = config.subscriberSecret;
  if (generated.includes('publisherKey')) process.env.TIDINGS_PUBLISHER_KEY = config.publisherKey;
}

/** Loud, on stderr and in the log: demo mode mints tokens and breaks connections on request. */
const DEMO_WARNING = 'DEMO MODE (--demo / TIDINGS_DEMO): /demo/* mints subscriber tokens and drops connections on request. '
  + 'It answers loopback clients only (or requests with the publisher key); never run it in production.';

async function main(): Promise<void> {
  const sub = await runSubcommand(process.argv.slice(2));
  if (sub !== null) {
    process.exitCode = sub;
    return;
  }
  let loaded: ReturnType<typeof loadConfig>;
  try {
    loaded = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`tidings-server: ${err.message}\n`);
      process.exit(EXIT_CONFIG);
    }
    throw err;
  }
  const { config, generated, help, warnings } = loaded;
  if (help) {
    process.stdout.write(helpText() + '\n\n' + SUBCOMMANDS_HELP + '\n');
    return;
  }
  if (!isWorker()) {
    printSecrets(config, generated);
    for (const w of warnings) process.stderr.write(`tidings-server: warning: ${w}\n`);
    if (config.demo) process.stderr.write(`\n*** ${DEMO_WARNING} ***\n\n`);
  }
  if (config.workers > 1 && !isWorker()) {
    await runPrimary(config, (line) => process.stdout.write(line + '\n'));
    return;
  }

  const { createTidingsServer } = await import('./server.js');
  (await import('./metrics.js')).setBuildVersion(version());
  const server = createTidingsServer(config, { listen: listenOptions(config) });
  for (const w of warnings) server.ctx.log.warn(w);
  if (config.demo) server.ctx.log.warn(DEMO_WARNING);
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      // Second signal: the operator does not want to wait.
      process.exit(signal === 'SIGINT' ? 130 : 143);
    }
    stopping = true;
    server.ctx.log.info({ signal }, 'signal received: draining');
    // SIGTERM comes from an orchestrator whose load balancer must see the node leave;
    // Ctrl-C (SIGINT) from a person at a terminal, who wants it gone now.
    server.drain(config.drainWindowMs, signal === 'SIGTERM' ? config.drainListenMs : 0).then(
      () => process.exit(0),
      (err) => {
        server.ctx.log.error({ err }, 'drain failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  // A worker drains on the primary's SIGTERM only: a terminal's Ctrl-C reaches the
  // whole process group, and a second signal would skip the drain.
  process.on('SIGINT', isWorker() ? () => {} : onSignal);

  try {
    const { host, port } = await server.listen();
    server.ctx.log.info(startLine(config, host, port), 'listening');
    if (isWorker()) return reportListening(host, port);
    const shown = host.includes(':') ? `[${host}]` : host;
    process.stdout.write(`listening on http://${shown}:${port}\n`);
  } catch (err) {
    process.stderr.write(`tidings-server: cannot start: ${(err as Error).message}\n`);
    process.exit(1);
  }
}

/** The one JSON line at start: where, which bus, the limits (never a secret: the Redis URL loses its password). */
function startLine(config: Config, host: string, port: number): Record<string, unknown> {
  let bus = 'memory';
  if (config.redisUrl) {
    try {
      const u = new URL(config.redisUrl);
      bus = `${u.protocol}//${u.host}${u.pathname}`;
    } catch {
      bus = 'redis';
    }
  } else if (config.redisCluster.length > 0) {
    // Seeds may carry credentials (redis://:secret@host:port): only host:port.
    bus = 'redis-cluster://' + config.redisCluster.map((s) => s.replace(/^[a-z]+:\/\/(?:[^@/]*@)?/, '').replace(/\/$/, '')).join(',');
  }
  return {
    address: `${host}:${port}`, bus, pid: process.pid, demo: config.demo,
    metricsPort: config.metricsPort || null, trustProxy: config.trustProxy,
    subscriberSecretCount: subscriberKeyring(config).length, publisherKeyCount: publisherKeysOf(config).length,
    limits: {
      maxConnections: config.maxConnections, maxHandshakes: config.maxHandshakes, maxHeldPolls: config.maxHeldPolls,
      maxMessageBytes: config.maxMessageBytes, maxOutboundBytes: config.maxOutboundBytes, maxHeadBytes: config.maxHeadBytes,
      maxChannels: config.maxChannels, pingMs: config.pingMs, drainWindowMs: config.drainWindowMs, drainListenMs: config.drainListenMs,
    },
  };
}

void main();
