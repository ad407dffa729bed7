#!/usr/bin/env node
// Renders bench/out/*.json into bench/RESULTS.md and the SVG charts in
// bench/charts/. A --quick run renders into bench/out/RESULTS.quick.md
// instead, so a smoke run never overwrites the real results.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { barChart, binChart } from './lib/svg.mjs';
import { SERVER_LABELS } from './lib/servers.mjs';

const DIR = fileURLToPath(new URL('./', import.meta.url));
const OUT = `${DIR}out/`;
const ORDER = ['idle', 'fanout', 'upgrade', 'poll', 'storm', 'size'];

const kb = (b) => (Number.isFinite(b) ? (b / 1024).toFixed(2) : 'n/a');
const n0 = (v) => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : 'n/a');
const n1 = (v) => (Number.isFinite(v) ? v.toFixed(1) : 'n/a');
const n2 = (v) => (Number.isFinite(v) ? v.toFixed(2) : 'n/a');
const label = (s) => SERVER_LABELS[s] ?? s;
const table = (head, rows) => [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');

function load(quick) {
  const r = {};
  for (const name of ORDER) {
    const file = quick ? `${OUT}${name}.quick.json` : `${OUT}${name}.json`;
    if (existsSync(file)) r[name] = JSON.parse(readFileSync(file, 'utf8'));
  }
  return r;
}

/** A result file of a benchmark that renders its own section. */
function extraResult(name, quick) {
  const file = `${OUT}${name}${quick ? '.quick' : ''}.json`;
  return existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : null;
}

function fmtTarget(t) {
  const v = t.value === null || t.value === undefined ? 'n/a' : Math.abs(t.value) >= 100 ? n0(t.value) : n2(t.value);
  return [t.what, v, `${t.op} ${t.limit}`, t.pass === null || t.pass === undefined ? '—' : t.pass ? '**met**' : '**missed**'];
}

const sections = {
  idle(r) {
    const s = Object.keys(r.median);
    return [
      `Idle subscribers: ${r.params.total.toLocaleString('en-US')} connections that completed hello/welcome, one channel each (\`user:<i>\`), held idle; ${r.params.loaders} loader processes; median of ${r.params.runs} run(s), a fresh server process per run. Heap = \`heapUsed\` after \`global.gc()\`; per connection = (value at ${r.params.total.toLocaleString('en-US')} − value before any connection, after a warm-up) / connections; marginal = (value at ${r.params.total.toLocaleString('en-US')} − value at ${r.params.step.toLocaleString('en-US')}) / ${(r.params.total - r.params.step).toLocaleString('en-US')}.`,
      '',
      table(['server', 'heap / conn (KB)', 'RSS / conn (KB)', 'marginal heap (KB)', 'marginal RSS (KB)', 'connected'],
        s.map((k) => [label(k), kb(r.median[k].heapPerConn), kb(r.median[k].rssPerConn), kb(r.median[k].marginalHeap), kb(r.median[k].marginalRss), n0(r.median[k].connected)])),
      '',
      '![memory per idle connection](charts/memory.svg)',
    ].join('\n');
  },
  fanout(r) {
    const s = Object.keys(r.median);
    const ws = r.median.ws?.deliveriesPerSec;
    return [
      `Fan-out: ${r.params.subscribers.toLocaleString('en-US')} subscribers on one channel, ${r.params.events} publishes of a 100-byte event through \`POST /v1/publish\`, each sent as soon as the previous one was answered (keep-alive). Time = first publish sent → last subscriber has the last event. Server CPU and event-loop delay (\`monitorEventLoopDelay\`, 5 ms resolution, resolution subtracted) measured inside the server process. Median of ${r.params.runs} run(s).`,
      '',
      table(['server', 'deliveries/s', 'vs ws', 'total (ms)', 'event → last subscriber p50 (ms)', 'publish response p50 / p99 (ms)', 'loop delay p99 (ms)', 'server CPU / delivery (µs)'],
        s.map((k) => { const m = r.median[k]; return [label(k), n0(m.deliveriesPerSec), ws ? `${(m.deliveriesPerSec / ws).toFixed(2)}x` : '', n0(m.totalMs), n1(m.eventLatencyP50Ms), `${n1(m.publishP50Ms)} / ${n1(m.publishP99Ms)}`, n1(m.lagP99Ms), n2(m.cpuPerDeliveryUs)]; })),
      '',
      'uWebSockets.js and Bun: measured in section 8 (anchors), each as its own process: uWebSockets.js v20 from the `uwebsockets` package on a Node 20 binary, Bun from the `bun` package.',
      '',
      '![fan-out rate](charts/fanout.svg)',
    ].join('\n');
  },
  upgrade(r) {
    const i = r.inprocess;
    const s = Object.keys(r.median);
    return [
      '**(a) In-process**, same request bytes (a Chrome-like upgrade request, 13 headers): ours = `parseUpgrade(buf, 8192)` + `acceptResponse(key, protocol)` (parse, accept key, the 101 bytes); ws = a fresh socket stand-in (`stream.Duplex`) handed to `http.Server` (`emit("connection")`), the bytes fed with `emit("data")` so the HTTP parser, `upgrade` event, `WebSocketServer.handleUpgrade` and the 101 write all run synchronously; the cost of creating the stand-in is measured alone and subtracted. Time: median of timed batches after a warm-up. Allocation: growth of `heapUsed + arrayBuffers` over a batch run with a 64 MB young generation (`--min/max-semi-space-size=64`) so that no GC runs during it; a `PerformanceObserver` on `gc` entries checks that, and a batch that saw a GC is retried smaller. Native allocations outside V8 (OpenSSL SHA-1 state) are not counted, on either side.',
      '',
      table(['path', 'ns / op', 'bytes / op'], [
        ['Tidings `parseUpgrade` + `acceptResponse`', n0(i.tidings.nsPerOp), n0(i.tidings.bytesPerOp)],
        ['`http.Server` + `ws.handleUpgrade` (stand-in subtracted)', n0(i.wsNet.nsPerOp), n0(i.wsNet.bytesPerOp)],
        ['(the socket stand-in alone)', n0(i.fakeSocket.nsPerOp), n0(i.fakeSocket.bytesPerOp)],
        ['ratio ws / ours', `${(i.wsNet.nsPerOp / i.tidings.nsPerOp).toFixed(1)}x`, `${(i.wsNet.bytesPerOp / i.tidings.bytesPerOp).toFixed(1)}x`],
      ]),
      '',
      `**(b) Over loopback**: ${r.params.churn.toLocaleString('en-US')} upgrades, each a new TCP connection from a raw client that sends the upgrade, waits for the 101, sends a masked close frame and waits for the server to close; server CPU (user + system, inside the server process) divided by upgrades. Median of ${r.params.runs} run(s).`,
      '',
      table(['server', 'server CPU / upgrade+close (µs)', 'vs ws', 'upgrades/s (${r.params.loaders} loaders)'.replace('${r.params.loaders}', r.params.loaders)],
        s.map((k) => [label(k), n1(r.median[k].cpuPerUpgradeUs), r.median.ws ? `${(r.median[k].cpuPerUpgradeUs / r.median.ws.cpuPerUpgradeUs).toFixed(2)}x` : '', n0(r.median[k].upgradesPerSec)])),
    ].join('\n');
  },
  poll(r) {
    const s = Object.keys(r.median);
    return [
      `autocannon, ${r.params.connections} connections, ${r.params.seconds} s, \`GET /v1/poll?channels=bench\` with \`Authorization: Bearer <token>\` and an \`If-None-Match\` equal to the current heads (every answer a 304), against a bare \`node:http\` handler that answers \`304\` with no headers of its own. Median of ${r.params.runs} run(s).`,
      '',
      table(['server', '304/s', 'vs bare', 'latency p50 / p99 (ms)', 'server CPU / request (µs)', 'bytes per 304'],
        s.map((k) => [label(k), n0(r.median[k].notModifiedPerSec), r.median.http304 ? `${(r.median[k].notModifiedPerSec / r.median.http304.notModifiedPerSec).toFixed(2)}x` : '', `${r.median[k].latencyP50Ms} / ${r.median[k].latencyP99Ms}`, n1(r.median[k].cpuPerRequestUs), n0(r.median[k].bytesPer304)])),
      '',
      ...Object.entries(r.wire ?? {}).flatMap(([k, w]) => [`The 304 on the wire from ${label(k)} (${w.bytes} bytes):`, '', '```http', w.head.trimEnd(), '```', '']),
    ].join('\n');
  },
  storm(r) {
    const s = Object.keys(r.median);
    const names = { sdk: "Tidings SDK (dist/tidings.mjs), transport 'websocket'", 'sdk-auto': "Tidings SDK, transport 'auto' (default)", rws: 'reconnecting-websocket, default options' };
    return [
      `${r.params.clients.toLocaleString('en-US')} clients in ${r.params.processes} Node processes (Node's global WebSocket), ${r.params.channels} channels (\`room:<i mod ${r.params.channels}>\`). The server (\`main.js\`, its own process, in-memory bus) gets SIGTERM: it closes its listener and every socket with 1012 and a ${r.params.windowMs / 1000} s window; a new server process starts on the same port at once. "Back" = the client received \`welcome\` again; bins of 100 ms from the SIGTERM. Events are published during the storm (once a second, to one channel in turn, so that the fan-out does not stall the 2 shared cores and fake a reconnect peak) and once more to every channel after everybody is back; a client "lost an event" unless it has every one of them, or a \`reset\` and every event after it (PROTOCOL.md "No silent loss"; with an in-memory server every resume after a restart is a \`reset\`). reconnecting-websocket speaks the same hello/welcome protocol by hand; its default \`minReconnectionDelay\` (1000 + random × 4000 ms) is drawn once per module load, i.e. once per page, so each client here draws its own. Median of ${r.params.runs} run(s).`,
      '',
      table(['client', 'connected', 'peak per 100 ms', 'uniform per 100 ms', 'peak / uniform', 'all back after (ms)', 'not back', 'lost an event', 'got reset', 'ended on WebSocket / polling', 'went through polling'],
        s.map((k) => { const m = r.median[k]; return [names[k] ?? k, n0(m.connected), n0(m.peakPer100ms), n1(m.uniformPer100ms), n2(m.peakRatio), n0(m.allBackMs), n0(m.notBack), n0(m.lost), n0(m.resets), k === 'rws' ? 'n/a' : `${n0(m.onWebSocket)} / ${n0(m.onPolling)}`, k === 'rws' ? 'n/a' : n0(m.wentPolling)]; })),
      '',
      '![reconnections per 100 ms](charts/storm.svg)',
    ].join('\n');
  },
  size(r) {
    const rows = Object.entries(r.rows);
    return [
      'Each library bundled the same way: esbuild, `export * from "<package>"` (everything it exports), IIFE, minified, browser platform, ES2020; then gzip -9 (and brotli 11 for reference). Tidings goes through the same step from its built ESM module `dist/tidings.mjs` (the vendored mitt and reconnecting-websocket inside, src/vendor/), and from `src/index.ts`; the shipped `dist/tidings.min.js` (rollup + terser) is listed too.',
      '',
      table(['library', 'minified (B)', 'gzip -9 (B)', 'brotli (B)'], rows.map(([k, v]) => (v.error ? [k, v.error, '', ''] : [k, n0(v.minBytes), n0(v.gzipBytes), n0(v.brotliBytes)]))),
      ...(r.breakdown ? ['', 'Where the esbuild bundle of `src/index.ts` (untrimmed reconnecting-websocket) spends its minified bytes (esbuild metafile, before gzip):', '', table(['input', 'minified bytes'], r.breakdown.map(([f, b]) => [`\`${f}\``, n0(b)]))] : []),
    ].join('\n');
  },
};

const TITLES = { idle: '1. Idle subscribers', fanout: '2. Fan-out', upgrade: '3. Upgrade', poll: '4. Polling', storm: '5. Reconnect storm', size: '6. SDK size' };

export async function render({ quick = false } = {}) {
  const res = load(quick);
  const any = Object.values(res)[0];
  const m = any?.machine;
  const lines = [
    '# Tidings benchmarks',
    '',
    quick ? '**Quick smoke run: small counts, not results.**\n' : '',
    `Rendered by \`node bench/render.mjs\` from \`bench/out/*.json\` (written by \`npm run bench\`). Machine: ${m ? `${m.cores} cores (${m.cpu}), ${m.memoryGiB} GiB memory, Node ${m.node}, ${m.platform}` : 'unknown'}. Date: ${m?.date ?? 'unknown'}.`,
    '',
    'Every benchmark runs its references in the same run on the same machine, interleaved (server A, B, C, then again), each server in its own process and measured from inside it; figures are medians over the runs. Loopback only; clients are raw TCP WebSocket clients (idle, fan-out, upgrade) spread over several loader processes bound to 127.0.0.2, 127.0.0.3, …, or the real SDK (storm).',
    '',
    '## Targets',
    '',
    table(['benchmark', 'measure', 'value', 'target', 'result'], [...ORDER, 'scale'].flatMap((n) => (res[n] ?? extraResult(n, quick))?.targets?.map((t) => [n, ...fmtTarget(t)]) ?? [])),
    '',
  ];
  const notes = `${DIR}NOTES.md`;
  if (!quick && existsSync(notes)) lines.push(readFileSync(notes, 'utf8').trim(), '');
  for (const n of ORDER) {
    if (!res[n]) continue;
    lines.push(`## ${TITLES[n]}`, '');
    if (res[n].error) { lines.push(`Failed: ${res[n].error}`, ''); continue; }
    lines.push(sections[n](res[n]), '', `Run took ${res[n].seconds?.toFixed(0)} s.`, '');
  }
  // Benchmarks that render their own section (bench/fanout-redis.mjs).
  for (const extra of ['fanout-redis', 'anchors', 'scale']) {
    const file = `${OUT}${extra}${quick ? '.quick' : ''}.json`;
    if (!existsSync(file)) continue;
    const mod = await import(`./${extra}.mjs`);
    const r = JSON.parse(readFileSync(file, 'utf8'));
    lines.push(r.error ? `## ${extra}\n\nFailed: ${r.error}\n` : mod.render(r), `Run took ${r.seconds?.toFixed(0) ?? '?'} s.`, '');
  }
  lines.push('## Reference figures from the brief (Node 20, same kind of machine; not measured here)', '',
    table(['server', 'heap / idle conn', 'RSS / idle conn', 'deliveries/s', 'CPU per upgrade+close'], [
      ['ws 8 on http.Server', '2.5 KB', '5.1 KB', '119k', '95 µs'],
      ['bare net, hand-parsed upgrade', '1.1 KB', '4.0 KB', '148k', '51 µs'],
      ['uWebSockets (C++)', '0.03 KB', '1.0 KB', '154k', '31 µs'],
    ]), '');

  const chartDir = quick ? `${OUT}charts/` : `${DIR}charts/`;
  mkdirSync(chartDir, { recursive: true });
  if (res.idle?.median) {
    const s = Object.keys(res.idle.median);
    writeFileSync(`${chartDir}memory.svg`, barChart({ title: 'Memory per idle subscriber (after GC)', unit: 'KB', series: ['heap', 'RSS'], groups: s.map((k) => ({ label: label(k), values: [res.idle.median[k].heapPerConn / 1024, res.idle.median[k].rssPerConn / 1024] })), format: (v) => v.toFixed(1) }));
  }
  if (res.fanout?.median) {
    const s = Object.keys(res.fanout.median);
    writeFileSync(`${chartDir}fanout.svg`, barChart({ title: `Fan-out: deliveries per second (${res.fanout.params.subscribers.toLocaleString('en-US')} subscribers)`, unit: 'deliveries/s', series: ['deliveries/s'], groups: s.map((k) => ({ label: label(k), values: [res.fanout.median[k].deliveriesPerSec] })), format: (v) => `${Math.round(v / 1000)}k` }));
  }
  if (res.storm?.raw) {
    const series = Object.entries(res.storm.raw).map(([k, rows]) => ({ label: k === 'sdk' ? 'Tidings SDK' : k === 'sdk-auto' ? "Tidings SDK, 'auto'" : 'reconnecting-websocket', bins: rows.find((x) => x.bins)?.bins ?? [] }));
    const uniform = res.storm.median.sdk?.uniformPer100ms;
    writeFileSync(`${chartDir}storm.svg`, binChart({ title: 'Reconnections per 100 ms after the drain (first run)', binMs: 100, series, marker: uniform ? { value: 2 * uniform, label: '2x uniform' } : undefined }));
  }
  const file = quick ? `${OUT}RESULTS.quick.md` : `${DIR}RESULTS.md`;
  writeFileSync(file, lines.join('\n'));
  console.error(`bench: wrote ${file}`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await render({ quick: process.argv.includes('--quick') });
