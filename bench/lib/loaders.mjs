// Parent side of loader.mjs: several loader processes (open files are capped
// at 20,000 per process), each bound to its own 127.0.0.x so the loaders
// never run out of ephemeral ports towards one server port.
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';

// BENCH_LOADER: another loader script (comparing loaders in the same conditions).
const LOADER = process.env.BENCH_LOADER || fileURLToPath(new URL('./loader.mjs', import.meta.url));

function spawnLoader(index) {
  // BENCH_LOADER_ARGV: extra Node flags for the loaders (profiling them: --cpu-prof).
  const execArgv = [...process.execArgv, ...(process.env.BENCH_LOADER_ARGV ?? '').split(' ').filter(Boolean)];
  const child = fork(LOADER, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv });
  const queue = new Map();
  child.on('message', (m) => {
    const q = queue.get(m.ev);
    if (q) { queue.delete(m.ev); q(m); }
  });
  const exited = new Promise((r) => child.once('exit', r));
  const wait = (ev, ms) =>
    new Promise((resolve, reject) => {
      const t = setTimeout(() => { queue.delete(ev); reject(new Error(`loader ${index}: no ${ev} within ${ms} ms`)); }, ms);
      queue.set(ev, (m) => { clearTimeout(t); resolve(m); });
    });
  return {
    pid: child.pid,
    localAddress: `127.0.0.${2 + index}`,
    ready: wait('ready', 10_000),
    request(msg, ev, ms) { const p = wait(ev, ms); child.send(msg); return p; },
    /** Send `msg` and wait for several replies, registered before sending. */
    requestMany(msg, evs) { const ps = evs.map(([ev, ms]) => wait(ev, ms)); child.send(msg); return ps; },
    async stop() {
      if (child.exitCode !== null) return;
      try { child.send({ cmd: 'exit' }); } catch {}
      const t = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(t);
    },
  };
}

export async function startLoaders(count) {
  const ls = Array.from({ length: count }, (_, i) => spawnLoader(i));
  await Promise.all(ls.map((l) => l.ready));
  const split = (total) => ls.map((_, i) => Math.floor(total / ls.length) + (i < total % ls.length ? 1 : 0));

  return {
    size: ls.length,
    /** Process ids of the loaders (their CPU is measured apart from the server's). */
    pids: ls.map((l) => l.pid),
    /** Open `total` more clients spread over the loaders. channelMode 'per': channel user:<i>; 'one': all on `channel`. */
    /** With `deadline` (epoch ms) no client is started after it; those not started are counted in `notStarted`. */
    async connect(total, { port, channelMode = 'per', channel = 'bench', startIndex = 0, concurrency = 64, timeoutMs = 120_000, clientTimeoutMs = 30_000, deadline = undefined }) {
      const parts = split(total);
      let base = startIndex;
      const rs = await Promise.all(
        ls.map((l, i) => {
          const m = { cmd: 'connect', port, localAddress: l.localAddress, count: parts[i], startIndex: base, channelMode, channel, concurrency, timeoutMs: clientTimeoutMs, deadline };
          base += parts[i];
          return l.request(m, 'connected', deadline === undefined ? timeoutMs : Math.max(timeoutMs, deadline - Date.now() + clientTimeoutMs + 10_000));
        }),
      );
      const why = {};
      for (const r of rs) for (const [k, v] of Object.entries(r.why)) why[k] = (why[k] ?? 0) + v;
      return { ok: rs.reduce((a, r) => a + r.ok, 0), failed: rs.reduce((a, r) => a + r.failed, 0), notStarted: rs.reduce((a, r) => a + (r.notStarted ?? 0), 0), why, ms: Math.max(...rs.map((r) => r.ms)) };
    },
    /** Build the hello frames (tokens) of a later connect() with the same arguments ahead of it, outside the timed phase. */
    async prepare(total, { channelMode = 'per', channel = 'bench', startIndex = 0 }) {
      const parts = split(total);
      let base = startIndex;
      await Promise.all(ls.map((l, i) => {
        const m = { cmd: 'prepare', count: parts[i], startIndex: base, channelMode, channel };
        base += parts[i];
        return l.request(m, 'prepared', 120_000);
      }));
    },
    /** Arm every loader to time `events` deliveries; resolves once armed, with `done`: a promise of the outcome. */
    async expect(events, timeoutMs) {
      const pairs = ls.map((l) => l.requestMany({ cmd: 'expect', events, timeoutMs }, [['armed', 5_000], ['delivered', timeoutMs + 10_000]]));
      const done = pairs.map(([, d]) => d);
      await Promise.all(pairs.map(([a]) => a));
      // Wrapped in an object: an async function returning a bare promise would wait for it.
      return { done: Promise.all(done).then((rs) => ({
        // The moment the LAST subscriber (over all loaders) had event k.
        times: Array.from({ length: events }, (_, k) => (rs.some((r) => r.times[k] === null) ? null : Math.max(...rs.map((r) => r.times[k])))),
        missing: Array.from({ length: events }, (_, k) => rs.reduce((a, r) => a + r.missing[k], 0)),
        live: rs.reduce((a, r) => a + r.live, 0),
      })) };
    },
    async churn(total, { port, concurrency = 16, timeoutMs = 300_000 }) {
      const parts = split(total);
      const rs = await Promise.all(ls.map((l, i) => l.request({ cmd: 'churn', port, localAddress: l.localAddress, count: parts[i], concurrency }, 'churned', timeoutMs)));
      return { ok: rs.reduce((a, r) => a + r.ok, 0), failed: rs.reduce((a, r) => a + r.failed, 0), ms: Math.max(...rs.map((r) => r.ms)) };
    },
    /** Start timing every event (its data's "t" is the publish time) and counting per client. */
    async latencyStart() { await Promise.all(ls.map((l) => l.request({ cmd: 'latencyStart' }, 'latencyArmed', 10_000))); },
    /** Stop; publish→delivery times, and per open client its user index and events received. */
    async latencyStop() {
      const rs = await Promise.all(ls.map((l) => l.request({ cmd: 'latencyStop' }, 'latency', 60_000)));
      return { times: rs.flatMap((r) => r.times), users: rs.flatMap((r) => r.users), got: rs.flatMap((r) => r.got), closed: rs.reduce((a, r) => a + r.closed, 0) };
    },
    async closeAll() { await Promise.all(ls.map((l) => l.request({ cmd: 'closeAll' }, 'closedAll', 30_000))); },
    async stop() { await Promise.all(ls.map((l) => l.stop())); },
  };
}
