// Parent side of host.mjs: start a server under test in its own process and
// ask it for measurements.
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { existsSync } from 'node:fs';

const HOST = fileURLToPath(new URL('./host.mjs', import.meta.url));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export const SERVER_LABELS = { tidings: 'Tidings', ws: 'ws 8 on http.Server', net: 'bare net (hand-parsed)', http304: 'bare node:http 304' };

/** Node flags for a server process. Tidings runs from dist/ when built, else from the TS sources through tsx. */
function execArgv(kind) {
  const flags = ['--expose-gc'];
  if (kind === 'tidings' && !existsSync(`${ROOT}dist/server/server.js`)) flags.push('--import', 'tsx');
  return flags;
}

export async function startServer(kind, { timeoutMs = 30_000, extraArgs = [] } = {}) {
  const child = fork(HOST, [kind], { execArgv: [...execArgv(kind), ...extraArgs], cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const waiters = new Map();
  child.on('message', (m) => {
    const w = waiters.get(m.ev);
    if (w) { waiters.delete(m.ev); w.resolve(m); }
    else if (m.ev === 'error') for (const [, x] of waiters) x.reject(new Error(m.message));
  });
  const exited = new Promise((r) => child.once('exit', r));
  const request = (cmd, ev, ms = timeoutMs) =>
    new Promise((resolve, reject) => {
      const t = setTimeout(() => { waiters.delete(ev); reject(new Error(`${kind} server: no ${ev} within ${ms} ms`)); }, ms);
      waiters.set(ev, { resolve: (m) => { clearTimeout(t); resolve(m); }, reject: (e) => { clearTimeout(t); reject(e); } });
      if (cmd) child.send({ cmd });
    });
  let ready;
  try {
    ready = await Promise.race([request(null, 'ready'), exited.then((c) => { throw new Error(`${kind} server exited with ${c} before ready`); })]);
  } catch (e) { child.kill('SIGKILL'); throw e; }
  return {
    kind,
    port: ready.port,
    pid: ready.pid,
    measure: () => request('measure', 'measure'),
    cpu: () => request('cpu', 'cpu'),
    /** Heap snapshot after GC, written by the server process to `file`. */
    snapshot(file) {
      const p = request(null, 'snapshot', 120_000);
      child.send({ cmd: 'snapshot', file });
      return p;
    },
    lagStart: () => request('lagStart', 'lagStart'),
    lagStop: () => request('lagStop', 'lag'),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      try { child.send({ cmd: 'exit' }); } catch {}
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

export const cpuMicros = (m) => m.cpuUser + m.cpuSystem;
