#!/usr/bin/env node
// The CLI: config from env and flags, generated secrets printed once, one
// "listening on" line, and a drain on SIGTERM/SIGINT (a second signal exits at once).
//
// The cluster primary imports only config.ts and cluster.ts: the server (pino,
// prom-client, ioredis, jose) is loaded on demand by whichever process serves,
// so the primary stays at a bare Node process's memory.
import { ConfigError, helpText, loadConfig, type Config } from './config.js';
import { isWorker, listenOptions, reportListening, runPrimary } from './cluster.js';

/** Exit status for a configuration error (the usage convention of sysexits-less CLIs). */
export const EXIT_CONFIG = 2;

function printSecrets(config: Config, generated: ('subscriberSecret' | 'publisherKey')[]): void {
  if (generated.length === 0) return;
  // stdout, never the logger: a secret must not end up in log storage.
  const lines = ['', '------------------------------------------------------------------',
    'Generated secrets for this run only (set the variables to keep them):'];
  if (generated.includes('subscriberSecret')) lines.push(`  TIDINGS_SUBSCRIBER_SECRET=${config.subscriberSecret}`);
  if (generated.includes('publisherKey')) lines.push(`  TIDINGS_PUBLISHER_KEY=${config.publisherKey}`);
  lines.push('------------------------------------------------------------------', '');
  process.stdout.write(lines.join('\n') + '\n');
}

async function main(): Promise<void> {
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
  const { config, generated, help } = loaded;
  if (help) {
    process.stdout.write(helpText() + '\n');
    return;
  }
  printSecrets(config, generated);
  if (config.workers > 1 && !isWorker()) {
    await runPrimary(config, (line) => process.stdout.write(line + '\n'));
    return;
  }

  const { createTidingsServer } = await import('./server.js');
  const server = createTidingsServer(config, { listen: listenOptions(config) });
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      // Second signal: the operator does not want to wait.
      process.exit(signal === 'SIGINT' ? 130 : 143);
    }
    stopping = true;
    server.ctx.log.info({ signal }, 'signal received: draining');
    server.drain(config.drainWindowMs).then(
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
    if (isWorker()) return reportListening(host, port);
    const shown = host.includes(':') ? `[${host}]` : host;
    process.stdout.write(`listening on http://${shown}:${port}\n`);
  } catch (err) {
    process.stderr.write(`tidings-server: cannot start: ${(err as Error).message}\n`);
    process.exit(1);
  }
}

void main();
