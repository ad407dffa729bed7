// Byte fixtures for WebSocket tests: build masked client frames the way a browser
// would (RFC 6455 §5.2, §5.3), and parse the unmasked frames a server writes.
// Shared by unit and integration tests; no dependency on the code under test.

export const OP = { cont: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa } as const;

/** The masking key of the RFC 6455 §5.7 examples: fixed, so fixtures are reproducible. */
export const RFC_MASK = Uint8Array.from([0x37, 0xfa, 0x21, 0x3d]);

export interface ClientFrameOptions {
  /** Masking key; `false` sends the frame unmasked (a protocol violation). Default RFC_MASK. */
  mask?: Uint8Array | false;
  /** FIN bit, default true. */
  fin?: boolean;
  /** RSV1-3 as a 3-bit number (4 = RSV1), default 0. */
  rsv?: number;
  /** Force the 7-bit/16-bit/64-bit length form (to build non-minimal encodings). */
  lengthForm?: 7 | 16 | 64;
}

/** One client frame: header, masking key, masked payload. */
export function clientFrame(opcode: number, payload: Uint8Array | string = new Uint8Array(0), opts: ClientFrameOptions = {}): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : Buffer.from(payload);
  const mask = opts.mask === undefined ? RFC_MASK : opts.mask;
  const fin = opts.fin ?? true;
  const rsv = opts.rsv ?? 0;
  const n = body.length;
  const form = opts.lengthForm ?? (n < 126 ? 7 : n < 0x10000 ? 16 : 64);
  const lenBytes = form === 7 ? 0 : form === 16 ? 2 : 8;
  const head = Buffer.alloc(2 + lenBytes + (mask ? 4 : 0));
  head[0] = (fin ? 0x80 : 0) | ((rsv & 7) << 4) | (opcode & 0x0f);
  head[1] = (mask ? 0x80 : 0) | (form === 7 ? n : form === 16 ? 126 : 127);
  if (form === 16) head.writeUInt16BE(n, 2);
  if (form === 64) head.writeBigUInt64BE(BigInt(n), 2);
  if (mask) {
    head.set(mask, 2 + lenBytes);
    for (let i = 0; i < n; i++) body[i]! ^= mask[i & 3]!;
  }
  return Buffer.concat([head, body]);
}

export function clientText(str: string, opts?: ClientFrameOptions): Buffer {
  return clientFrame(OP.text, str, opts);
}

export function clientBinary(bytes: Uint8Array, opts?: ClientFrameOptions): Buffer {
  return clientFrame(OP.binary, bytes, opts);
}

/** A close frame with code and reason; `code` undefined sends an empty payload. */
export function clientClose(code?: number, reason = '', opts?: ClientFrameOptions): Buffer {
  if (code === undefined) return clientFrame(OP.close, new Uint8Array(0), opts);
  const r = Buffer.from(reason, 'utf8');
  const p = Buffer.alloc(2 + r.length);
  p.writeUInt16BE(code, 0);
  r.copy(p, 2);
  return clientFrame(OP.close, p, opts);
}

export interface ParsedFrame {
  opcode: number;
  fin: boolean;
  payload: Buffer;
}

/** Parse a run of complete server frames (unmasked; masked ones are unmasked too).
 *  Throws on a truncated frame: a test that gets half a frame should fail loudly. */
export function parseServerFrames(buf: Uint8Array): ParsedFrame[] {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: ParsedFrame[] = [];
  let off = 0;
  while (off < b.length) {
    if (b.length - off < 2) throw new Error(`truncated frame header at ${off}`);
    const b0 = b[off]!, b1 = b[off + 1]!;
    let len = b1 & 0x7f;
    let p = off + 2;
    if (len === 126) { len = b.readUInt16BE(p); p += 2; }
    else if (len === 127) { len = Number(b.readBigUInt64BE(p)); p += 8; }
    let mask: Buffer | null = null;
    if (b1 & 0x80) { mask = b.subarray(p, p + 4); p += 4; }
    if (p + len > b.length) throw new Error(`truncated frame payload at ${off}: need ${len} bytes`);
    const payload = Buffer.from(b.subarray(p, p + len));
    if (mask) for (let i = 0; i < len; i++) payload[i]! ^= mask[i & 3]!;
    out.push({ opcode: b0 & 0x0f, fin: (b0 & 0x80) !== 0, payload });
    off = p + len;
  }
  return out;
}

/** Readable byte fixtures: hex('81 85 37fa213d') — spaces and line breaks ignored. */
export function hex(s: string): Buffer {
  const clean = s.replace(/\s+/g, '');
  if (clean.length % 2 !== 0 || /[^0-9a-f]/i.test(clean)) throw new Error(`bad hex fixture: ${s}`);
  return Buffer.from(clean, 'hex');
}

/** Every way to cut `buf` into two pieces (offset 0..length), for split-anywhere tests. */
export function* splits(buf: Buffer): Generator<[Buffer, Buffer]> {
  for (let i = 0; i <= buf.length; i++) yield [Buffer.from(buf.subarray(0, i)), Buffer.from(buf.subarray(i))];
}
