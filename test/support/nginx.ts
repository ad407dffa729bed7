// A real nginx in front of a test server, configured with exactly the block
// docs/deploy.md documents (only the upstream and listen addresses replaced).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './redis.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const DEPLOY_DOC = path.join(ROOT, 'docs/deploy.md');

/** Debian puts nginx in /usr/sbin, which is not on a normal user's PATH. */
export function findNginx(): string | null {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/local/sbin', '/usr/local/nginx/sbin']) {
    if (dir === '') continue;
    const p = path.join(dir, 'nginx');
    if (existsSync(p)) return p;
  }
  return null;
}

/** The first ```nginx block of docs/deploy.md. */
export function documentedNginxConfig(): string {
  const md = readFileSync(DEPLOY_DOC, 'utf8');
  const m = /```nginx\n([\s\S]*?)```/.exec(md);
  if (!m) throw new Error('docs/deploy.md has no ```nginx block');
  return m[1]!;
}

/** The documented block, pointed at `upstreamPort` and listening on `listenPort` (both on 127.0.0.1). */
export function nginxSiteFor(doc: string, upstreamPort: number, listenPort: number): string {
  const site = doc.replace('server 127.0.0.1:8080;', `server 127.0.0.1:${upstreamPort};`).replace(/listen 80;/, `listen 127.0.0.1:${listenPort};`);
  if (!site.includes(`127.0.0.1:${upstreamPort};`) || !site.includes(`listen 127.0.0.1:${listenPort};`)) {
    throw new Error('docs/deploy.md: the nginx block must contain "server 127.0.0.1:8080;" and "listen 80;"');
  }
  return site;
}

export interface Nginx {
  url: string;
  port: number;
  stop(): Promise<void>;
}

export async function startNginx(bin: string, upstreamPort: number): Promise<Nginx> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tidings-nginx-'));
  for (const d of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(path.join(dir, d));
  const port = await freePort();
  // The main context a distribution's nginx.conf provides, minimal and unprivileged;
  // the site is the documented one, as an operator would drop it into conf.d/.
  const conf = `daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
${nginxSiteFor(documentedNginxConfig(), upstreamPort, port)}
}
`;
  writeFileSync(path.join(dir, 'nginx.conf'), conf);
  const child: ChildProcess = spawn(bin, ['-p', dir, '-e', path.join(dir, 'error.log'), '-c', path.join(dir, 'nginx.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      const log = existsSync(path.join(dir, 'error.log')) ? readFileSync(path.join(dir, 'error.log'), 'utf8') : '';
      throw new Error(`nginx exited at start: ${stderr}${log}`);
    }
    if (await canConnect(port)) break;
    if (Date.now() > deadline) throw new Error(`nginx did not listen within 10 s: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}
