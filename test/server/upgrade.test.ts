import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createHash } from 'node:crypto';
import { HandshakeError, HANDSHAKE_ERRORS, type HandshakeErrorCode } from '../../server/ws/errors.js';
import {
  acceptKey, acceptResponse, DEFAULT_RETRY_AFTER_S, parseUpgrade, rejectResponse, type UpgradeParse,
} from '../../server/ws/upgrade.js';
import { clientText } from '../support/frames.js';

const MAX = 8192;
const KEY = 'dGhlIHNhbXBsZSBub25jZQ=='; // RFC 6455 §1.3

/** A request head from lines; CRLF line endings and the blank line added. */
const head = (...lines: string[]) => Buffer.from(lines.map((l) => `${l}\r\n`).join('') + '\r\n', 'latin1');
const good = (...extra: string[]) => head(
  'GET /v1/ws HTTP/1.1', 'Host: example.com', 'Upgrade: websocket', 'Connection: Upgrade',
  `Sec-WebSocket-Key: ${KEY}`, 'Sec-WebSocket-Version: 13', ...extra);
/** The same request with one header line replaced (or removed when `line` is null). */
const without = (name: string, line: string | null = null, extra: string[] = []) => {
  const base = ['GET /v1/ws HTTP/1.1', 'Host: example.com', 'Upgrade: websocket', 'Connection: Upgrade',
    `Sec-WebSocket-Key: ${KEY}`, 'Sec-WebSocket-Version: 13'];
  const lines = base.flatMap((l) => (l.toLowerCase().startsWith(name.toLowerCase() + ':') ? (line === null ? [] : [line]) : [l]));
  return head(...lines, ...extra);
};
const parse = (b: Buffer | string, max = MAX) => parseUpgrade(typeof b === 'string' ? Buffer.from(b, 'latin1') : b, max);
const errorOf = (r: UpgradeParse): [HandshakeErrorCode, number] | UpgradeParse['kind'] =>
  r.kind === 'error' ? [r.error.code, r.error.status] : r.kind;

describe('parseUpgrade: valid requests', () => {
  it('accepts the RFC 6455 §1.3 request and copies out key, origin and the head end', () => {
    const req = good('Origin: http://example.com', 'Sec-WebSocket-Protocol: chat, tidings.v1');
    expect(parse(req)).toEqual({ kind: 'upgrade', key: KEY, protocol: true, origin: 'http://example.com', headEnd: req.length });
  });
  it('has no origin and no protocol when none was sent', () => {
    expect(parse(good())).toMatchObject({ kind: 'upgrade', origin: null, protocol: false });
  });
  it('accepts a query string after /v1/ws', () => {
    expect(parse(without('x', null).toString('latin1').replace('/v1/ws', '/v1/ws?x=1&y=%20'))).toMatchObject({ kind: 'upgrade' });
  });
  it('matches header names in any case and values tokens case-insensitively', () => {
    const req = head('GET /v1/ws HTTP/1.1', 'hOsT: a', 'UPGRADE: WebSocket', 'connection: keep-alive, UPGRADE',
      `sec-websocket-key: ${KEY}`, 'SEC-WEBSOCKET-VERSION: 13', 'ORIGIN: https://a.example');
    expect(parse(req)).toMatchObject({ kind: 'upgrade', key: KEY, origin: 'https://a.example' });
  });
  it('leaves pipelined frame bytes after the head for the caller', () => {
    const req = good();
    const frame = clientText('{"type":"hello"}');
    const r = parse(Buffer.concat([req, frame]));
    expect(r).toMatchObject({ kind: 'upgrade', headEnd: req.length });
  });
  it('tolerates optional whitespace around values and empty list elements (RFC 9110 §5.6.1)', () => {
    expect(parse(without('Connection', 'Connection:\t , upgrade ,'))).toMatchObject({ kind: 'upgrade' });
  });
  it.each([
    ['tidings.v1', true], ['chat, tidings.v1', true], [' tidings.v1 ,chat', true], ['tidings.v10', false],
    ['Tidings.V1', false], ['chat', false], ['', false],
  ])('Sec-WebSocket-Protocol: %j -> offered tidings.v1 = %s', (value, offered) => {
    expect(parse(good(`Sec-WebSocket-Protocol: ${value}`))).toMatchObject({ kind: 'upgrade', protocol: offered });
  });
  it('finds tidings.v1 in a second Sec-WebSocket-Protocol line', () => {
    expect(parse(good('Sec-WebSocket-Protocol: chat', 'Sec-WebSocket-Protocol: tidings.v1'))).toMatchObject({ protocol: true });
  });
  it('gives the same answer however the head is split across reads', () => {
    const full = Buffer.concat([good('Origin: o'), clientText('x')]);
    const expected = parse(full);
    const headEnd = (expected as { headEnd: number }).headEnd;
    for (let i = 0; i <= full.length; i++) {
      // The caller accumulates reads; every prefix is either still incomplete or the final answer.
      expect(parse(full.subarray(0, i)), `after ${i} bytes`).toEqual(i < headEnd ? { kind: 'incomplete' } : expected);
    }
  });
});

describe('parseUpgrade: routing to node:http as early as possible', () => {
  it.each([
    ['POST /v1/ws HTTP/1.1\r\n', 'http'],
    ['P', 'http'],
    ['GET /v1/wsx HTTP/1.1\r\n', 'http'],
    ['GET /v1/ws/ HTTP/1.1\r\n', 'http'],
    ['GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n', 'http'],
    ['GET /h', 'http'],
    ['get /v1/ws HTTP/1.1\r\n', 'http'], // methods are case-sensitive (RFC 9110 §9.1)
    ['HEAD /v1/ws HTTP/1.1\r\n', 'http'],
    ['', 'incomplete'],
    ['GE', 'incomplete'],
    ['GET /v1/', 'incomplete'],
    ['GET /v1/ws', 'incomplete'],
    ['GET /v1/ws?x=1 HTTP/1.1\r\nHost: a\r\n', 'incomplete'],
  ])('%j -> %s', (bytes, kind) => {
    expect(parse(bytes).kind).toBe(kind);
  });
});

describe('parseUpgrade: handshake errors', () => {
  const cases: [string, Buffer | string, HandshakeErrorCode][] = [
    ['no Host (RFC 9112 §3.2)', without('Host'), 'MALFORMED_REQUEST'],
    ['two Host lines', good('Host: other'), 'MALFORMED_REQUEST'],
    ['obs-fold', good('X-Long: a', ' continued'), 'MALFORMED_REQUEST'],
    ['a header line without a colon', good('NoColonHere'), 'MALFORMED_REQUEST'],
    ['whitespace before the colon (RFC 9112 §5.1)', good('Origin : x'), 'MALFORMED_REQUEST'],
    ['a NUL in a value', good('X-A: a\u0000b'), 'MALFORMED_REQUEST'],
    ['a bare CR in a value', good('X-A: a\rb'), 'MALFORMED_REQUEST'],
    ['a bare CR followed by what looks like a header', good('X-A: a\rXb: c'), 'MALFORMED_REQUEST'],
    ['an empty header name', good(': value'), 'MALFORMED_REQUEST'],
    ['a bare LF inside a line', good('X-A: a\nX-B: b'), 'MALFORMED_REQUEST'],
    ['bare LF line endings', 'GET /v1/ws HTTP/1.1\nHost: a\n\n', 'MALFORMED_REQUEST'],
    ['a malformed request line', head('GET /v1/ws  HTTP/1.1', 'Host: a'), 'MALFORMED_REQUEST'],
    ['a control byte in the query', head('GET /v1/ws?a\u0001 HTTP/1.1', 'Host: a'), 'MALFORMED_REQUEST'],
    ['a Content-Length body', good('Content-Length: 5'), 'MALFORMED_REQUEST'],
    ['Transfer-Encoding', good('Transfer-Encoding: chunked'), 'MALFORMED_REQUEST'],
    ['two Origin lines', good('Origin: a', 'Origin: b'), 'MALFORMED_REQUEST'],
    ['no Sec-WebSocket-Version', without('Sec-WebSocket-Version'), 'MALFORMED_REQUEST'],
    ['HTTP/1.0 (RFC 6455 §4.1)', without('x').toString('latin1').replace('HTTP/1.1', 'HTTP/1.0'), 'NOT_AN_UPGRADE'],
    ['no Upgrade header', without('Upgrade'), 'NOT_AN_UPGRADE'],
    ['Upgrade: h2c', without('Upgrade', 'Upgrade: h2c'), 'NOT_AN_UPGRADE'],
    ['Connection: keep-alive only', without('Connection', 'Connection: keep-alive'), 'NOT_AN_UPGRADE'],
    ['Connection: upgrades (not the token)', without('Connection', 'Connection: upgrades'), 'NOT_AN_UPGRADE'],
    ['Sec-WebSocket-Version: 8', without('Sec-WebSocket-Version', 'Sec-WebSocket-Version: 8'), 'BAD_VERSION'],
    ['Sec-WebSocket-Version: 13, 8', without('Sec-WebSocket-Version', 'Sec-WebSocket-Version: 13, 8'), 'BAD_VERSION'],
    ['Sec-WebSocket-Version: 130', without('Sec-WebSocket-Version', 'Sec-WebSocket-Version: 130'), 'BAD_VERSION'],
    ['no key', without('Sec-WebSocket-Key'), 'BAD_KEY'],
    ['a duplicate key header', good(`Sec-WebSocket-Key: ${KEY}`), 'BAD_KEY'],
    ['a 23-character key', without('Sec-WebSocket-Key', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ='), 'BAD_KEY'],
    ['a key without == padding', without('Sec-WebSocket-Key', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQAA'), 'BAD_KEY'],
    ['a key with a non-base64 character', without('Sec-WebSocket-Key', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZ!=='), 'BAD_KEY'],
  ];
  it('provokes every status the parser owns (the gateway decides 403, 404 and 503)', () => {
    const owned = Object.keys(HANDSHAKE_ERRORS).filter((c) => !['OVER_CAPACITY', 'ORIGIN_FORBIDDEN', 'NOT_FOUND'].includes(c));
    const seen = new Set<string>(cases.map(([, , code]) => code));
    const over = parse(good('X-Pad: ' + 'p'.repeat(MAX)));
    if (over.kind === 'error') seen.add(over.error.code);
    expect([...seen].sort()).toEqual(owned.sort());
  });
  it.each(cases)('%s -> %s', (_name, bytes, code) => {
    expect(errorOf(parse(bytes))).toEqual([code, HANDSHAKE_ERRORS[code]]);
  });
  it('answers 426 for a bad version before looking at the key', () => {
    const req = without('Sec-WebSocket-Version', 'Sec-WebSocket-Version: 7').toString('latin1').replace(KEY, 'nope');
    expect(errorOf(parse(req))).toEqual(['BAD_VERSION', 426]);
  });
});

describe('parseUpgrade: maxHead', () => {
  const padTo = (size: number) => {
    const base = good('X-Pad: ');
    return good(`X-Pad: ${'p'.repeat(size - base.length)}`);
  };
  it('accepts a head of exactly maxHead bytes and answers 431 one byte past it', () => {
    expect(padTo(1000).length).toBe(1000);
    expect(parse(padTo(1000), 1000).kind).toBe('upgrade');
    expect(errorOf(parse(padTo(1001), 1000))).toEqual(['HEAD_TOO_LARGE', 431]);
  });
  it('answers 431 as soon as maxHead bytes arrived without the end of the head', () => {
    const partial = padTo(2000).subarray(0, 1000);
    expect(parse(partial.subarray(0, 999), 1000).kind).toBe('incomplete');
    expect(errorOf(parse(partial, 1000))).toEqual(['HEAD_TOO_LARGE', 431]);
  });
  it('accepts a head at the limit followed by pipelined bytes past it', () => {
    expect(parse(Buffer.concat([padTo(1000), clientText('x'.repeat(100))]), 1000)).toMatchObject({ kind: 'upgrade', headEnd: 1000 });
  });
});

describe('acceptResponse', () => {
  it('computes Sec-WebSocket-Accept as in RFC 6455 §1.3', () => {
    expect(acceptKey(KEY)).toBe('s3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
  });
  it('writes the exact 101 response', () => {
    expect(acceptResponse(KEY, false).toString('latin1')).toBe(
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      'Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n');
  });
  it('selects tidings.v1 when the client offered it', () => {
    expect(acceptResponse(KEY, true).toString('latin1')).toBe(
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      'Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: tidings.v1\r\n\r\n');
  });
  it('computes the same accept value as hashing key + GUID, for any key (property)', () => {
    const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
    const viaString = (k: string) => createHash('sha1').update(k + GUID).digest('base64');
    fc.assert(fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (bytes) => {
      const k = Buffer.from(bytes).toString('base64');
      expect(acceptKey(k)).toBe(viaString(k));
    }));
    // Keys the parser never hands over still hash as strings: other lengths, non-ASCII.
    for (const k of ['', 'short', 'é'.repeat(24), 'x'.repeat(23) + '€', 'x'.repeat(25)]) expect(acceptKey(k)).toBe(viaString(k));
  });
  it('does not let one key leak into the next', () => {
    const first = acceptKey(KEY);
    acceptKey('AAAAAAAAAAAAAAAAAAAAAA==');
    expect(acceptKey(KEY)).toBe(first);
  });
  it('does not share the template between responses', () => {
    const a = acceptResponse(KEY, false);
    acceptResponse('AAAAAAAAAAAAAAAAAAAAAA==', false);
    expect(a.toString('latin1')).toContain('s3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
  });
});

/** Split an HTTP response into status, headers (lowercased names) and body. */
function readResponse(buf: Buffer) {
  const text = buf.toString('utf8');
  const [headPart, body] = [text.slice(0, text.indexOf('\r\n\r\n')), text.slice(text.indexOf('\r\n\r\n') + 4)];
  const [statusLine, ...lines] = headPart.split('\r\n');
  const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
  return { statusLine, headers, body };
}

describe('rejectResponse', () => {
  it.each(Object.entries(HANDSHAKE_ERRORS) as [HandshakeErrorCode, number][])(
    '%s: status %i, Connection: close, JSON error body with the right length', (code, status) => {
      const r = readResponse(rejectResponse(new HandshakeError(code, 'why "it" failed')));
      expect(r.statusLine).toMatch(new RegExp(`^HTTP/1\\.1 ${status} [A-Z]`));
      expect(r.headers['connection']).toMatch(/close/);
      expect(r.headers['content-type']).toBe('application/json');
      expect(Number(r.headers['content-length'])).toBe(Buffer.byteLength(r.body));
      expect(JSON.parse(r.body)).toEqual({ error: code.toLowerCase(), message: 'why "it" failed' });
    });
  it('426 advertises Sec-WebSocket-Version: 13 and Upgrade (RFC 6455 §4.4, RFC 9110 §15.5.22)', () => {
    const r = readResponse(rejectResponse(new HandshakeError('BAD_VERSION', 'v')));
    expect(r.headers).toMatchObject({ 'sec-websocket-version': '13', upgrade: 'websocket' });
  });
  it('503 carries Retry-After, the given value or the default', () => {
    expect(readResponse(rejectResponse(new HandshakeError('OVER_CAPACITY', 'busy'), 30)).headers['retry-after']).toBe('30');
    expect(readResponse(rejectResponse(new HandshakeError('OVER_CAPACITY', 'busy'))).headers['retry-after']).toBe(String(DEFAULT_RETRY_AFTER_S));
    expect(readResponse(rejectResponse(new HandshakeError('OVER_CAPACITY', 'busy'), NaN)).headers['retry-after']).toBe(String(DEFAULT_RETRY_AFTER_S));
  });
  it('adds no Retry-After or version header to a 400', () => {
    const r = readResponse(rejectResponse(new HandshakeError('BAD_KEY', 'k')));
    expect(r.headers['retry-after']).toBeUndefined();
    expect(r.headers['sec-websocket-version']).toBeUndefined();
  });
});

describe('parseUpgrade: properties', () => {
  it('never throws on random bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), fc.integer({ min: 1, max: 400 }), (raw, max) => {
      expect(['incomplete', 'http', 'error', 'upgrade']).toContain(parse(Buffer.from(raw), max).kind);
    }), { numRuns: 1000 });
  });
  it('never throws on random bytes after "GET /v1/ws "', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (raw) => {
      const r = parse(Buffer.concat([Buffer.from('GET /v1/ws '), raw, Buffer.from('\r\n\r\n')]));
      expect(['incomplete', 'error', 'upgrade']).toContain(r.kind);
    }), { numRuns: 1000 });
  });
  it('never throws on a valid request with random bytes overwritten', () => {
    const base = good('Origin: x', 'Sec-WebSocket-Protocol: tidings.v1');
    fc.assert(fc.property(fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 5 }), (edits) => {
      const b = Buffer.from(base);
      for (const [at, v] of edits) b[at % b.length] = v;
      expect(['incomplete', 'http', 'error', 'upgrade']).toContain(parse(b).kind);
    }), { numRuns: 1000 });
  });
  it('accepts any mix of header-name case and optional whitespace', () => {
    const flip = (s: string, bits: number[]) => [...s].map((c, i) => ((bits[i % bits.length] ?? 0) & 1 ? c.toUpperCase() : c.toLowerCase())).join('');
    fc.assert(fc.property(fc.array(fc.nat(), { minLength: 1, maxLength: 30 }), fc.constantFrom('', ' ', '\t', '  '), (bits, ows) => {
      const req = head('GET /v1/ws HTTP/1.1', `${flip('Host', bits)}:${ows}a${ows}`, `${flip('Upgrade', bits)}:${ows}${flip('websocket', bits)}`,
        `${flip('Connection', bits)}:${ows}${flip('upgrade', bits)}`, `${flip('Sec-WebSocket-Key', bits)}:${ows}${KEY}${ows}`,
        `${flip('Sec-WebSocket-Version', bits)}:${ows}13${ows}`);
      expect(parse(req)).toMatchObject({ kind: 'upgrade', key: KEY });
    }), { numRuns: 200 });
  });
});

describe('interop with a real client (the ws package, over loopback)', () => {
  /** A minimal server made of the pure modules: parse the head, answer, then echo messages. */
  async function withServer(fn: (url: string) => Promise<void>, maxHead = MAX) {
    const { createServer } = await import('node:net');
    const { receive, initReceiver } = await import('../../server/ws/receiver.js');
    const { encodeFrame, encodeText, encodeClose, OP_BINARY, OP_PONG } = await import('../../server/ws/frame.js');
    const server = createServer((socket) => {
      let head = Buffer.alloc(0);
      const conn = { spill: null as Buffer | null, frags: null as Buffer[] | null, fragOpcode: 0, fragBytes: 0 };
      initReceiver(conn);
      let open = false;
      const sink = {
        message: (_c: unknown, data: Buffer, isText: boolean) => { socket.write(isText ? encodeText(`echo:${data.toString()}`) : encodeFrame(OP_BINARY, data)); },
        ping: (_c: unknown, p: Buffer) => { socket.write(encodeFrame(OP_PONG, p)); },
        pong: () => {},
        close: (_c: unknown, code: number) => { socket.end(encodeClose(code === 1005 ? 1000 : code)); },
        error: (_c: unknown, err: { closeCode: number; code: string }) => { socket.end(encodeClose(err.closeCode, err.code)); },
      };
      socket.on('data', (chunk: Buffer) => {
        if (open) return receive(conn, chunk, 1 << 20, sink);
        head = Buffer.concat([head, chunk]);
        const r = parseUpgrade(head, maxHead);
        if (r.kind === 'incomplete') return;
        if (r.kind !== 'upgrade') {
          socket.end(rejectResponse(r.kind === 'error' ? r.error : new HandshakeError('NOT_FOUND', 'no')));
          return;
        }
        open = true;
        socket.write(acceptResponse(r.key, r.protocol));
        if (head.length > r.headEnd) receive(conn, Buffer.from(head.subarray(r.headEnd)), 1 << 20, sink);
      });
      socket.on('error', () => {});
    });
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    const { port } = server.address() as { port: number };
    try { await fn(`ws://127.0.0.1:${port}`); } finally { server.close(); }
  }

  it('completes the handshake with tidings.v1, and its frames (text, fragmented, 100 KiB binary, ping) decode', async () => {
    const { WebSocket } = await import('ws');
    await withServer(async (url) => {
      const ws = new WebSocket(`${url}/v1/ws?v=1`, ['other', 'tidings.v1'], { origin: 'http://example.com' });
      const got: string[] = [];
      let pong = '';
      ws.on('pong', (p) => { pong = p.toString(); });
      const done = new Promise<void>((ok, ko) => {
        ws.on('message', (data, isBinary) => {
          got.push(isBinary ? `bin:${(data as Buffer).length}` : data.toString());
          if (got.length === 3) ok();
        });
        ws.on('error', ko);
      });
      await new Promise((ok) => ws.once('open', ok));
      expect(ws.protocol).toBe('tidings.v1');
      ws.send('héllo ✓');
      ws.send('frag', { fin: false });
      ws.ping('are you there');
      ws.send('mented', { fin: true });
      ws.send(Buffer.alloc(100 * 1024, 1), { binary: true });
      await done;
      expect(got).toEqual(['echo:héllo ✓', 'echo:fragmented', 'bin:102400']);
      expect(pong).toBe('are you there');
      const closed = new Promise<number>((ok) => ws.once('close', (code) => ok(code)));
      ws.close(4000, 'bye');
      expect(await closed).toBe(4000);
    });
  });

  it('gets a 426 with Sec-WebSocket-Version: 13 for another protocol version', async () => {
    const { WebSocket } = await import('ws');
    await withServer(async (url) => {
      const ws = new WebSocket(`${url}/v1/ws`, { protocolVersion: 8 });
      const res = await new Promise<{ status: number; version: string | undefined }>((ok, ko) => {
        ws.on('unexpected-response', (_req, r) => ok({ status: r.statusCode!, version: r.headers['sec-websocket-version'] as string | undefined }));
        ws.on('open', () => ko(new Error('opened')));
        ws.on('error', () => {});
      });
      expect(res).toEqual({ status: 426, version: '13' });
    });
  });
});
