// Runs ONE server under test in its own process and measures it from inside:
// heap after global.gc() (needs --expose-gc), RSS, process.cpuUsage(), and
// event-loop delay. The parent talks to it over IPC:
//   -> {cmd:'measure'} | {cmd:'cpu'} | {cmd:'lagStart'} | {cmd:'lagStop'} | {cmd:'exit'}
//   <- {ev:'ready', port} | {ev:'measure', heap, rss, ...} | ...
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { BENCH_SECRET, BENCH_PUBLISHER_KEY } from './token.mjs';

const kind = process.argv[2];
const opts = { secret: BENCH_SECRET, publisherKey: BENCH_PUBLISHER_KEY };

async function start() {
  switch (kind) {
    case 'ws': { const { createWsServer } = await import('../ref/ws-server.mjs'); return listen(createWsServer(opts)); }
    case 'net': { const { createNetServer } = await import('../ref/net-server.mjs'); return listen(createNetServer(opts)); }
    case 'http304': { const { createHttp304Server } = await import('../ref/http304.mjs'); return listen(createHttp304Server()); }
    // BENCH_TIDINGS_ENV: JSON of extra TIDINGS_* settings, for experiments (e.g. a smaller fan-out slice).
    case 'tidings': { const { startTidings } = await import('./tidings-server.mjs'); return startTidings({ ...opts, env: JSON.parse(process.env.BENCH_TIDINGS_ENV || '{}') }); }
    default: throw new Error(`unknown server kind ${kind}`);
  }
}

function listen(s) {
  return new Promise((resolve, reject) => {
    // Backlog large enough for the loaders' connect bursts (the kernel caps it at somaxconn).
    s.server.listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, () => resolve({ port: s.server.address().port, connections: s.connections, close: () => new Promise((r) => s.server.close(() => r())) }));
    s.server.on('error', reject);
  });
}

async function gcHard() {
  // Several passes with turns of the loop between them, so weak callbacks and
  // finalizers run and the old generation settles.
  for (let i = 0; i < 4; i++) { global.gc(); await sleep(20); }
}

// The histogram records the whole interval between samples, so the delay is
// the value minus the sampling resolution.
const LAG_RESOLUTION_MS = 5;
const lag = monitorEventLoopDelay({ resolution: LAG_RESOLUTION_MS });
const excess = (ns) => Math.max(0, ns / 1e6 - LAG_RESOLUTION_MS);
let srv;

process.on('message', async (m) => {
  try {
    switch (m.cmd) {
      case 'measure': {
        await gcHard();
        const mu = process.memoryUsage();
        const cpu = process.cpuUsage();
        process.send({ ev: 'measure', heap: mu.heapUsed, external: mu.external, arrayBuffers: mu.arrayBuffers, rss: mu.rss, cpuUser: cpu.user, cpuSystem: cpu.system, connections: srv.connections() });
        break;
      }
      case 'cpu': {
        const cpu = process.cpuUsage();
        process.send({ ev: 'cpu', cpuUser: cpu.user, cpuSystem: cpu.system, connections: srv.connections() });
        break;
      }
      case 'snapshot': {
        await gcHard();
        const { writeHeapSnapshot } = await import('node:v8');
        process.send({ ev: 'snapshot', file: writeHeapSnapshot(m.file) });
        break;
      }
      case 'lagStart': lag.reset(); lag.enable(); process.send({ ev: 'lagStart' }); break;
      case 'lagStop': {
        lag.disable();
        process.send({ ev: 'lag', p50: excess(lag.percentile(50)), p99: excess(lag.percentile(99)), max: excess(lag.max), count: lag.count });
        break;
      }
      case 'exit': await srv?.close?.().catch(() => {}); process.exit(0);
    }
  } catch (err) {
    process.send({ ev: 'error', message: String(err?.stack ?? err) });
  }
});
process.on('disconnect', () => process.exit(0));

if (typeof global.gc !== 'function') { console.error('host.mjs needs --expose-gc'); process.exit(2); }
srv = await start();
process.send({ ev: 'ready', port: srv.port, pid: process.pid });
