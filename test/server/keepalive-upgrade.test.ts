// Issue 11, defects 1 and 4: a WebSocket upgrade on a socket that already carried
// HTTP requests (what nginx does with an upstream keepalive pool), and requests
// that carry an Upgrade header the server does not take (h2c) on plain routes.
import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import type { Config } from '../../server/config.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { clientText, OP, parseServerFrames } from '../support/frames.js';
import { headEnd, rawConnect, UPGRADE_HEAD, type RawClient } from '../support/ws-client.js';
import { TEST_PUBLISHER_KEY } from '../support/context.js';

let servers: TestServer[] = [];
const sockets: RawClient[] = [];

async function start(overrides: Partial<Config> = {}): Promise<TestServer> {
  const s = await startTestServer(overrides);
  servers.push(s);
  return s;
}

afterEach(async () => {
  for (const r of sockets.splice(0)) r.socket.destroy();
  await Promise.all(servers.map((s) => s.close()));
  servers = [];
});

/** A complete HTTP/1.1 response (Content-Length framed) at `from`, or null while incomplete. */
function responseAt(b: Buffer, from: number): { status: number; head: string; body: string; end: number } | null {
  const rest = b.subarray(from);
  const he = headEnd(rest);
  if (he < 0) return null;
  const head = rest.subarray(0, he).toString('latin1');
  const len = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
  if (rest.length < he + len) return null;
  return { status: Number(head.slice(9, 12)), head, body: rest.subarray(he, he + len).toString('utf8'), end: from + he + len };
}

async function keepAliveSocket(s: TestServer): Promise<RawClient> {
  const raw = await rawConnect(s.port);
  sockets.push(raw);
  return raw;
}

describe('an upgrade on a keep-alive socket that already carried requests', () => {
  it('reaches welcome, like one on a fresh connection', async () => {
    const s = await start();
    const raw = await keepAliveSocket(s);
    raw.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    const first = responseAt(await raw.until((b) => responseAt(b, 0) !== null), 0)!;
    expect(first.status).toBe(200);
    raw.socket.write('POST /v1/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
      + `Authorization: Bearer ${TEST_PUBLISHER_KEY}\r\nContent-Length: 27\r\n\r\n{"channel":"a","data":"hi"}`);
    const second = responseAt(await raw.until((b) => responseAt(b, first.end) !== null), first.end)!;
    expect(second.status).toBe(200);
    // The hello right behind the head, in the same write: the bytes node:http read past the head are frames.
    const token = await s.token(['a']);
    raw.socket.write(Buffer.concat([Buffer.from(UPGRADE_HEAD('/v1/ws', ['Sec-WebSocket-Protocol: tidings.v1'])),
      clientText(JSON.stringify({ type: 'hello', token, channels: { a: null } }))]));
    const b = await raw.until((x) => {
      const at = headEnd(x.subarray(second.end));
      return at > 0 && parseServerFrames(x.subarray(second.end + at)).length > 0;
    });
    const rest = b.subarray(second.end);
    const head = rest.subarray(0, headEnd(rest)).toString('latin1');
    expect(head).toMatch(/^HTTP\/1\.1 101 /);
    expect(head).toContain('Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
    expect(head).toContain('Sec-WebSocket-Protocol: tidings.v1');
    const [welcome] = parseServerFrames(rest.subarray(headEnd(rest)));
    expect(welcome!.opcode).toBe(OP.text);
    expect(JSON.parse(welcome!.payload.toString()).type).toBe('welcome');
    expect(s.ctx.control.connections()).toBe(1);

    // Live delivery works on it, and a drain closes it 1012 like any other.
    await s.publish('a', 'live');
    await raw.until((x) => parseServerFrames(x.subarray(second.end + headEnd(rest))).length >= 2);
    const frames = parseServerFrames(raw.bytes().subarray(second.end + headEnd(rest)));
    expect(JSON.parse(frames[1]!.payload.toString())).toMatchObject({ type: 'event', channel: 'a', data: 'live' });
  });

  it('gets the same refusals as on a fresh connection (bad version 426, origin 403, over capacity 503)', async () => {
    const open = await start({ allowedOrigins: ['https://mail.example'] });
    const full = await start({ maxConnections: 0 });
    const cases: [TestServer, string, number][] = [
      [open, UPGRADE_HEAD('/v1/ws', ['Origin: https://evil.example']), 403],
      [open, UPGRADE_HEAD('/v1/ws', ['Origin: https://mail.example']).replace('Version: 13', 'Version: 8'), 426],
      [full, UPGRADE_HEAD(), 503],
    ];
    for (const [s, upgrade, status] of cases) {
      const raw = await keepAliveSocket(s);
      raw.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
      const first = responseAt(await raw.until((b) => responseAt(b, 0) !== null), 0)!;
      raw.socket.write(upgrade);
      const r = responseAt(await raw.until((b) => responseAt(b, first.end) !== null), first.end)!;
      expect(r.status).toBe(status);
      if (status === 426) expect(r.head).toContain('Sec-WebSocket-Version: 13');
      if (status === 503) expect(r.head).toMatch(/Retry-After: \d+/);
      await raw.ended; // refused: the connection closes, no 101 ever
    }
    // Nothing left counted as a handshake in progress.
    expect(open.server.runtime.handshakes).toBe(0);
    expect(full.server.runtime.handshakes).toBe(0);
  });

  it('answers 404 for an upgrade to another path, as on a fresh connection', async () => {
    const s = await start();
    const raw = await keepAliveSocket(s);
    raw.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    const first = responseAt(await raw.until((b) => responseAt(b, 0) !== null), 0)!;
    raw.socket.write(UPGRADE_HEAD('/v1/other'));
    const r = responseAt(await raw.until((b) => responseAt(b, first.end) !== null), first.end)!;
    expect(r.status).toBe(404);
  });
});

describe('a request with an Upgrade header the server does not take is served as plain HTTP/1.1', () => {
  const h2c = { Upgrade: 'h2c', Connection: 'Upgrade, HTTP2-Settings', 'HTTP2-Settings': 'AAMAAABkAAQCAAAAAAIAAAAA' };
  const send = (port: number, method: string, path: string, headers: Record<string, string>, body?: string) =>
    new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, method, path, headers, agent: false }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode!, text }));
      });
      // node:http's client emits 'upgrade' only for a 101; anything else is a response.
      req.on('upgrade', () => reject(new Error('unexpected 101')));
      req.on('error', reject);
      req.end(body);
    });

  it('GET /healthz with Upgrade: h2c is 200 ok', async () => {
    const s = await start();
    expect(await send(s.port, 'GET', '/healthz', h2c)).toEqual({ status: 200, text: 'ok\n' });
  });

  it('POST /v1/publish with Upgrade: h2c publishes', async () => {
    const s = await start();
    const r = await send(s.port, 'POST', '/v1/publish', {
      ...h2c, Authorization: `Bearer ${TEST_PUBLISHER_KEY}`, 'Content-Type': 'application/json',
    }, '{"channel":"a","data":1}');
    expect(r.status).toBe(200);
    expect(JSON.parse(r.text).cursor).toMatch(/^[0-9A-Za-z_.-]+$/);
  });
});
