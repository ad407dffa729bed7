#!/usr/bin/env node
// Profile our server under one benchmark's load, at a small scale:
//   node bench/profile.mjs poll|fanout|upgrade|idle|connect [--seconds N]
// Runs the server with --cpu-prof, drives the load, and prints the functions
// with the most self time (the .cpuprofile lands in bench/out/prof/ for
// Chrome DevTools). Used to explain the targets RESULTS.md reports as missed.
import { readFileSync, readdirSync, mkdirSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import http from 'node:http';
import autocannon from 'autocannon';
import { startServer } from './lib/servers.mjs';
import { startLoaders } from './lib/loaders.mjs';
import { signToken } from './lib/token.mjs';
import { rawRequest } from './poll.mjs';
import { publish, eventData } from './fanout.mjs';

const DIR = fileURLToPath(new URL('./out/prof/', import.meta.url));
const which = process.argv[2] ?? 'poll';
const seconds = Number(process.argv[process.argv.indexOf('--seconds') + 1]) || 3;

/** Self time per function from a V8 .cpuprofile, top `n`. */
export function topSelf(profile, n = 20) {
  const byId = new Map(profile.nodes.map((x) => [x.id, x]));
  const self = new Map();
  const dt = profile.timeDeltas;
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byId.get(profile.samples[i]);
    const cf = node.callFrame;
    const key = `${cf.functionName || '(anonymous)'} ${cf.url.replace(/^.*\/(node_modules\/|dist\/|bench\/)/, '$1')}:${cf.lineNumber + 1}`;
    self.set(key, (self.get(key) ?? 0) + (dt[i] ?? 0));
  }
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  return [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, v]) => `${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}`);
}

/** Self size and count per (type, name) in a .heapsnapshot. */
function byConstructor(text) {
  const snap = JSON.parse(text);
  const f = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const [iType, iName, iSize] = [f.indexOf('type'), f.indexOf('name'), f.indexOf('self_size')];
  const out = new Map();
  for (let i = 0; i < snap.nodes.length; i += f.length) {
    const type = types[snap.nodes[i + iType]];
    const name = type === 'object' || type === 'closure' || type === 'native' ? snap.strings[snap.nodes[i + iName]] : `(${type})`;
    const key = `${type === 'closure' ? 'closure ' : ''}${name}`.slice(0, 60);
    const e = out.get(key) ?? { count: 0, size: 0 };
    e.count++;
    e.size += snap.nodes[i + iSize];
    out.set(key, e);
  }
  return out;
}

export function diffSnapshots(aText, bText, n, top = 25) {
  const a = byConstructor(aText), b = byConstructor(bText);
  const rows = [];
  for (const [k, v] of b) {
    const w = a.get(k) ?? { count: 0, size: 0 };
    rows.push([k, (v.size - w.size) / n, (v.count - w.count) / n]);
  }
  rows.sort((x, y) => y[1] - x[1]);
  const total = rows.reduce((s, r) => s + r[1], 0);
  return [`${total.toFixed(0).padStart(7)} B  total`, ...rows.slice(0, top).map(([k, sz, c]) => `${sz.toFixed(0).padStart(7)} B  ${c.toFixed(2).padStart(6)} x  ${k}`)];
}

async function main() {
  rmSync(DIR, { recursive: true, force: true });
  mkdirSync(DIR, { recursive: true });
  const srv = await startServer('tidings', { extraArgs: ['--cpu-prof', `--cpu-prof-dir=${DIR}`] });
  try {
    if (which === 'poll') {
      const authorization = `Bearer ${await signToken('p', ['bench'])}`;
      const first = await rawRequest(srv.port, { authorization });
      const etag = /\r\netag:\s*([^\r\n]+)/i.exec(first.head)[1];
      const r = await autocannon({ url: `http://127.0.0.1:${srv.port}/v1/poll?channels=bench`, connections: 8, duration: seconds, headers: { authorization, 'if-none-match': etag } });
      console.log(`304/s: ${Math.round(r['3xx'] / r.duration)}`);
    } else if (which === 'fanout' || which === 'upgrade') {
      const loaders = await startLoaders(2);
      if (which === 'fanout') {
        await loaders.connect(500, { port: srv.port, channelMode: 'one', channel: 'bench' });
        const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
        const end = Date.now() + seconds * 1000;
        let k = 0;
        while (Date.now() < end) await publish(srv.port, 'bench', eventData(++k), agent);
        agent.destroy();
        console.log(`publishes: ${k} to 500 subscribers`);
      } else {
        const r = await loaders.churn(1000, { port: srv.port });
        console.log(`upgrades: ${r.ok}`);
      }
      await loaders.stop();
    } else if (which === 'connect') {
      // Where a new subscriber's CPU goes (upgrade, token, subscribe, welcome): per-user channels.
      const loaders = await startLoaders(2);
      const r = await loaders.connect(4000, { port: srv.port, channelMode: 'per', startIndex: 0 });
      console.log(`connected: ${r.ok} in ${r.ms.toFixed(0)} ms`);
      await loaders.stop();
    } else if (which === 'idle') {
      // Heap snapshots with N and 2N idle subscribers: the difference per connection, by constructor.
      const n = 500;
      const loaders = await startLoaders(2);
      await loaders.connect(n, { port: srv.port, channelMode: 'per', startIndex: 0 });
      const a = await srv.snapshot(`${DIR}idle-a.heapsnapshot`);
      await loaders.connect(n, { port: srv.port, channelMode: 'per', startIndex: n });
      const b = await srv.snapshot(`${DIR}idle-b.heapsnapshot`);
      await loaders.stop();
      console.log(`heap per extra idle subscriber, by constructor (bytes, self size; ${n} more subscribers):`);
      console.log(diffSnapshots(readFileSync(a.file, 'utf8'), readFileSync(b.file, 'utf8'), n).join('\n'));
    } else throw new Error(`unknown profile target ${which}`);
  } finally {
    await srv.stop();
  }
  for (const f of readdirSync(DIR).filter((x) => x.endsWith('.cpuprofile'))) {
    console.log(`\n${DIR}${f}`);
    console.log(topSelf(JSON.parse(readFileSync(`${DIR}${f}`, 'utf8'))).join('\n'));
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await main();
