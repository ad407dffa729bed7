// The companion server as a child process, the way a user runs it:
// `node dist/server/main.js --demo`, ready when it prints `listening on http://HOST:PORT`.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, SERVER_MAIN } from './paths.js';

/** Short timings so every scenario runs in seconds (PROTOCOL.md defaults are 25 s and up). */
export const E2E_TIMINGS = {
  pingMs: 1000,
  pongGraceMs: 1000,
  drainWindowMs: 3000,
} as const;

export const SUBSCRIBER_SECRET = 'e2e-subscriber-secret-0123456789abcdef';
export const PUBLISHER_KEY = 'e2e-publisher-key';

const READY_TIMEOUT_MS = 10_000;
const EXIT_TIMEOUT_MS = 10_000;

// Node 24 (the repo's pinned node package) even if the runner was started by another node.
const NODE = existsSync(join(ROOT, 'node_modules/.bin/node')) ? join(ROOT, 'node_modules/.bin/node') : process.execPath;

export class TidingsServer {
  port = 0;
  /** Everything the processes printed, for the test's attachments when it fails. */
  output = '';
  private proc: ChildProcess | null = null;
  private exited: Promise<number | null> = Promise.resolve(null);

  constructor(private readonly env: Record<string, string> = {}) {}

  get base(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.proc !== null;
  }

  /** Start on `port` (0: any free port; the port actually used is kept for restarts). */
  async start(port = this.port): Promise<void> {
    if (this.proc) throw new Error('server already running');
    const proc = spawn(NODE, [SERVER_MAIN, '--demo'], {
      cwd: ROOT,
      env: {
        ...process.env,
        TIDINGS_PORT: String(port),
        TIDINGS_HOST: '127.0.0.1',
        TIDINGS_PING_MS: String(E2E_TIMINGS.pingMs),
        TIDINGS_PONG_GRACE_MS: String(E2E_TIMINGS.pongGraceMs),
        TIDINGS_DRAIN_WINDOW_MS: String(E2E_TIMINGS.drainWindowMs),
        // A stopped test server needs no load balancer to notice it: close the listener at once.
        TIDINGS_DRAIN_LISTEN_MS: '0',
        TIDINGS_POLL_INTERVAL_S: '1',
        TIDINGS_SUBSCRIBER_SECRET: SUBSCRIBER_SECRET,
        TIDINGS_PUBLISHER_KEY: PUBLISHER_KEY,
        TIDINGS_LOG_LEVEL: 'warn',
        ...this.env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc = proc;
    this.exited = new Promise((resolve) => proc.once('exit', (code) => resolve(code)));
    void this.exited.then(() => {
      if (this.proc === proc) this.proc = null;
    });
    proc.stderr!.setEncoding('utf8').on('data', (s: string) => (this.output += s));
    const ready = new Promise<number>((resolve, reject) => {
      let line = '';
      proc.stdout!.setEncoding('utf8').on('data', (s: string) => {
        this.output += s;
        line += s;
        const m = /listening on http:\/\/[^\s:]+:(\d+)/.exec(line);
        if (m) resolve(Number(m[1]));
      });
      void this.exited.then((code) => reject(new Error(`server exited (${code}) before listening:\n${this.output}`)));
      setTimeout(() => reject(new Error(`server not listening after ${READY_TIMEOUT_MS} ms:\n${this.output}`)), READY_TIMEOUT_MS).unref();
    });
    try {
      this.port = await ready;
    } catch (err) {
      proc.kill('SIGKILL');
      throw err;
    }
  }

  /** Send `signal` and wait for the exit; resolves with the exit code. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    const proc = this.proc;
    if (!proc) return null;
    proc.kill(signal);
    const timer = setTimeout(() => proc.kill('SIGKILL'), EXIT_TIMEOUT_MS);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /** SIGTERM (drain), wait for the exit, start a fresh process (empty in-memory bus) on the same port. */
  async restart(): Promise<void> {
    const port = this.port;
    await this.stop('SIGTERM');
    await this.start(port);
  }

  async publish(channel: string, data: unknown): Promise<string> {
    const r = await fetch(`${this.base}/v1/publish`, {
      method: 'POST',
      headers: { authorization: `Bearer ${PUBLISHER_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ channel, data }),
    });
    if (r.status !== 200) throw new Error(`publish: HTTP ${r.status} ${await r.text()}`);
    return ((await r.json()) as { cursor: string }).cursor;
  }

  /** Publish `subjects` one after the other (order matters) as demo mails; returns their cursors. */
  async mail(channel: string, ...subjects: string[]): Promise<string[]> {
    const cursors: string[] = [];
    for (const subject of subjects) cursors.push(await this.publish(channel, { from: 'e2e@tidings', subject, at: Date.now() }));
    return cursors;
  }

  async simulate(action: 'drop' | 'block-ws' | 'unblock-ws' | 'freeze' | 'unfreeze', code?: number): Promise<{ dropped?: number; connections: number }> {
    const q = new URLSearchParams({ action });
    if (code !== undefined) q.set('code', String(code));
    const r = await fetch(`${this.base}/demo/simulate?${q}`, { method: 'POST' });
    if (r.status !== 200) throw new Error(`simulate ${action}: HTTP ${r.status} ${await r.text()}`);
    return (await r.json()) as { dropped?: number; connections: number };
  }
}
