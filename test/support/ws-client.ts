// Clients for integration tests: the `ws` npm package as an independent
// WebSocket implementation, and a raw TCP socket for bytes no library would send.
import net from 'node:net';
import WebSocket from 'ws';
import { parseServerFrames, type ParsedFrame } from './frames.js';

export type Msg = Record<string, unknown> & { type: string };

export interface WsClient {
  ws: WebSocket;
  /** The next message not yet taken (JSON-parsed), waiting for it if needed. */
  next(timeoutMs?: number): Promise<Msg>;
  /** Messages received and not yet taken by next(). */
  readonly queue: Msg[];
  /** Resolves with the close code and reason the client saw. */
  closed: Promise<{ code: number; reason: string }>;
  send(msg: unknown): void;
}

export async function openWs(url: string, opts: { protocol?: string; origin?: string } = {}): Promise<WsClient> {
  const ws = new WebSocket(url, opts.protocol ?? 'tidings.v1', opts.origin ? { origin: opts.origin } : {});
  const queue: Msg[] = [];
  let waiter: (() => void) | null = null;
  ws.on('message', (data) => {
    queue.push(JSON.parse(String(data)) as Msg);
    waiter?.();
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.on('close', (code, reason) => {
      resolve({ code, reason: reason.toString() });
      waiter?.();
    });
  });
  ws.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (_req, res) => reject(new Error(`unexpected response ${res.statusCode}`)));
    ws.once('error', reject);
  });
  const client: WsClient = {
    ws,
    queue,
    closed,
    send: (msg) => ws.send(typeof msg === 'string' ? msg : JSON.stringify(msg)),
    async next(timeoutMs = 3000) {
      const deadline = Date.now() + timeoutMs;
      while (queue.length === 0) {
        if (ws.readyState === WebSocket.CLOSED) throw new Error('closed while waiting for a message');
        const left = deadline - Date.now();
        if (left <= 0) throw new Error('timed out waiting for a message');
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, left);
          waiter = () => { clearTimeout(t); waiter = null; resolve(); };
        });
      }
      return queue.shift()!;
    },
  };
  return client;
}

/** Open, say hello, return the client after `welcome` (the welcome is returned separately). */
export async function subscribe(url: string, token: string, channels: Record<string, string | null>): Promise<{ c: WsClient; welcome: Msg }> {
  const c = await openWs(url);
  c.send({ type: 'hello', token, channels });
  const welcome = await c.next();
  if (welcome.type !== 'welcome') throw new Error(`expected welcome, got ${JSON.stringify(welcome)}`);
  return { c, welcome };
}

export const UPGRADE_HEAD = (path = '/v1/ws', extra: string[] = []) =>
  [`GET ${path} HTTP/1.1`, 'Host: 127.0.0.1', 'Upgrade: websocket', 'Connection: Upgrade',
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version: 13', ...extra].join('\r\n') + '\r\n\r\n';

export interface RawClient {
  socket: net.Socket;
  /** Everything received so far. */
  bytes(): Buffer;
  /** Wait until the received bytes satisfy `pred` (or the socket closed), then return them. */
  until(pred: (b: Buffer) => boolean, timeoutMs?: number): Promise<Buffer>;
  /** Resolves when the server closed the TCP connection. */
  ended: Promise<void>;
}

export function rawConnect(port: number): Promise<RawClient> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    let wake: (() => void) | null = null;
    let done = false;
    socket.on('data', (d) => { buf = Buffer.concat([buf, d]); wake?.(); });
    const ended = new Promise<void>((r) => socket.on('close', () => { done = true; wake?.(); r(); }));
    socket.on('error', () => {});
    socket.once('connect', () => resolve({
      socket,
      bytes: () => buf,
      ended,
      async until(pred, timeoutMs = 3000) {
        const deadline = Date.now() + timeoutMs;
        while (!pred(buf)) {
          if (done) return buf;
          const left = deadline - Date.now();
          if (left <= 0) throw new Error(`timed out; got ${JSON.stringify(buf.toString('latin1').slice(0, 300))}`);
          await new Promise<void>((r) => { const t = setTimeout(r, left); wake = () => { clearTimeout(t); wake = null; r(); }; });
        }
        return buf;
      },
    }));
    socket.once('error', reject);
  });
}

/** Index just past the first CRLFCRLF, or -1. */
export function headEnd(b: Buffer): number {
  const i = b.indexOf('\r\n\r\n');
  return i < 0 ? -1 : i + 4;
}

/** Upgrade a raw socket; resolves after the 101 head with the frame bytes that follow it. */
export async function rawUpgrade(port: number): Promise<RawClient & { frames(): ParsedFrame[] }> {
  const raw = await rawConnect(port);
  raw.socket.write(UPGRADE_HEAD());
  const b = await raw.until((x) => headEnd(x) > 0);
  if (!b.toString('latin1').startsWith('HTTP/1.1 101')) throw new Error(`no 101: ${b.toString('latin1')}`);
  const at = headEnd(b);
  return { ...raw, frames: () => parseServerFrames(raw.bytes().subarray(at)) };
}

/** Close code of a close frame payload (1005 when empty). */
export function closeCodeOf(f: ParsedFrame): number {
  return f.payload.length >= 2 ? f.payload.readUInt16BE(0) : 1005;
}
