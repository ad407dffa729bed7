#!/usr/bin/env node
// `npm run bench`: every benchmark, each against its references in the same
// run, results as JSON in bench/out/, rendered into bench/RESULTS.md.
//   --only idle,fanout,upgrade,poll,storm,size,fanout-redis,anchors,scale   a subset
//   --quick                                       a small smoke run (seconds, small counts)
//   --servers tidings,ws,net                      restrict servers (where it applies)
//   --no-render                                   keep RESULTS.md as it is
//   --no-build                                    measure dist/ as it is (default: `npm run build` first,
//                                                 so the server and SDK measured are the current sources)
import { mkdirSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { machine } from './lib/bench.mjs';

// scale (100,000 subscribers) runs last: it loads the machine hardest, ~12 minutes, and stops itself.
const ALL = ['size', 'upgrade', 'poll', 'idle', 'fanout', 'storm', 'fanout-redis', 'anchors', 'scale'];
const OUT = fileURLToPath(new URL('./out/', import.meta.url));

function parseArgs(argv) {
  const a = { only: ALL, quick: false, servers: null, render: true, build: true };
  for (let i = 0; i < argv.length; i++) {
    const x = argv[i];
    const val = () => { const [, v] = x.split('='); return v ?? argv[++i]; };
    if (x === '--quick') a.quick = true;
    else if (x.startsWith('--only')) a.only = val().split(',').map((s) => s.trim()).filter(Boolean);
    else if (x.startsWith('--servers')) a.servers = val().split(',').map((s) => s.trim()).filter(Boolean);
    else if (x === '--no-render') a.render = false;
    else if (x === '--no-build') a.build = false;
    else if (x === '--help') { console.log('node bench/run.mjs [--quick] [--only a,b] [--servers tidings,ws,net] [--no-render] [--no-build]'); process.exit(0); }
    else throw new Error(`unknown argument ${x}`);
  }
  for (const o of a.only) if (!ALL.includes(o)) throw new Error(`unknown benchmark ${o} (one of ${ALL.join(', ')})`);
  return a;
}

// Hard cap on the whole run: every benchmark is bounded, this is the backstop.
const HARD_LIMIT_MS = 60 * 60_000;

async function main() {
  const args = parseArgs(process.argv.slice(2));
  mkdirSync(OUT, { recursive: true });
  const killer = setTimeout(() => { console.error(`bench: over ${HARD_LIMIT_MS / 60000} min, giving up`); process.exit(3); }, HARD_LIMIT_MS);
  killer.unref();
  if (args.build) {
    console.error('== npm run build');
    const b = spawnSync('npm', ['run', '--silent', 'build'], { stdio: ['ignore', 'ignore', 'inherit'], timeout: 300_000 });
    // A failed build leaves dist/ as it was; the server then falls back to the TS sources (tsx) only where dist/ is missing.
    if (b.status !== 0) console.error('   build failed: measuring whatever dist/ holds (or the sources through tsx)');
  }
  const failures = [];
  for (const name of args.only) {
    if ((name === 'fanout-redis' || name === 'scale') && spawnSync('redis-server', ['--version']).status !== 0) { console.error(`== ${name} skipped: no redis-server`); continue; }
    const mod = await import(`./${name}.mjs`);
    const t0 = Date.now();
    console.error(`== ${name}${args.quick ? ' (quick)' : ''}`);
    let result;
    try {
      const opts = { quick: args.quick, log: (s) => console.error(s) };
      if (args.servers && mod.defaultServers) opts.servers = mod.defaultServers.filter((s) => args.servers.includes(s));
      result = await mod.run(opts);
    } catch (err) {
      console.error(`   ${name} failed: ${err?.stack ?? err}`);
      result = { name, error: String(err?.message ?? err) };
      failures.push(name);
    }
    result.machine = machine();
    result.quick = args.quick;
    result.seconds = (Date.now() - t0) / 1000;
    writeFileSync(`${OUT}${name}${args.quick ? '.quick' : ''}.json`, JSON.stringify(result, null, 2));
    for (const t of result.targets ?? []) console.error(`   ${t.pass === null ? '?' : t.pass ? 'PASS' : 'MISS'} ${t.what}: ${fmt(t.value)} (target ${t.op} ${t.limit})`);
    console.error(`   ${name} done in ${result.seconds.toFixed(1)} s`);
  }
  if (args.render) {
    const { render } = await import('./render.mjs');
    await render({ quick: args.quick });
  }
  if (failures.length) { console.error(`bench: failed: ${failures.join(', ')}`); process.exitCode = 1; }
}

const fmt = (v) => (typeof v === 'number' ? (Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3)) : String(v));

main().catch((err) => { console.error(err); process.exit(1); });
