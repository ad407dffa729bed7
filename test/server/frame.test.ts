import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { isUtf8 } from 'node:buffer';
import {
  decodeHeader, encodeClose, encodeFrame, encodeText, headerSize, isValidCloseCode, unmask,
  OP_BINARY, OP_PING, OP_TEXT, type FrameHeader,
} from '../../server/ws/frame.js';
import { clientFrame, hex, parseServerFrames, OP, RFC_MASK } from '../support/frames.js';

const newHeader = (): FrameHeader => ({ fin: false, opcode: 0, length: 0, size: 0, masked: false });

describe('headerSize', () => {
  it.each([
    [0, 2], [125, 2], [126, 4], [65535, 4], [65536, 10], [2 ** 32, 10],
  ])('a %i-byte payload needs a %i-byte header (minimal encoding, §5.2)', (len, size) => {
    expect(headerSize(len)).toBe(size);
  });
});

describe('encodeFrame (server frames, unmasked)', () => {
  // RFC 6455 §5.7 examples.
  it('encodes "Hello" as a single unmasked text frame', () => {
    expect(encodeFrame(OP_TEXT, Buffer.from('Hello'))).toEqual(hex('81 05  48 65 6c 6c 6f'));
  });
  it('encodes an unmasked ping with "Hello"', () => {
    expect(encodeFrame(OP_PING, Buffer.from('Hello'))).toEqual(hex('89 05  48 65 6c 6c 6f'));
  });
  it('uses the 16-bit length for 256 bytes', () => {
    const f = encodeFrame(OP_BINARY, Buffer.alloc(256, 7));
    expect(f.subarray(0, 4)).toEqual(hex('82 7e 0100'));
    expect(f.length).toBe(260);
  });
  it('uses the 64-bit length for 64 KiB', () => {
    const f = encodeFrame(OP_BINARY, Buffer.alloc(65536, 7));
    expect(f.subarray(0, 10)).toEqual(hex('82 7f 00000000 00010000'));
    expect(parseServerFrames(f)[0]!.payload).toEqual(Buffer.alloc(65536, 7));
  });
  it('encodes an empty payload', () => {
    expect(encodeFrame(OP_BINARY, Buffer.alloc(0))).toEqual(hex('82 00'));
  });
});

describe('encodeText', () => {
  it('frames a pre-serialized JSON string with its UTF-8 byte length, not its char length', () => {
    const json = JSON.stringify({ type: 'event', data: 'héllo ✓ 😀' });
    const [f] = parseServerFrames(encodeText(json));
    expect(f).toMatchObject({ opcode: OP.text, fin: true });
    expect(f!.payload.toString('utf8')).toBe(json);
    expect(f!.payload.length).toBe(Buffer.byteLength(json));
  });
  it.each([125, 126, 65535, 65536])('switches length form correctly at %i bytes', (n) => {
    const f = encodeText('x'.repeat(n));
    expect(f.length).toBe(headerSize(n) + n);
    expect(parseServerFrames(f)[0]!.payload.length).toBe(n);
  });
  it('round-trips any string through the frame', () => {
    fc.assert(fc.property(fc.string({ unit: 'grapheme', maxLength: 300 }), (s) => {
      expect(parseServerFrames(encodeText(s))[0]!.payload.toString('utf8')).toBe(s);
    }));
  });
});

describe('encodeClose', () => {
  it('writes the code big-endian and the reason', () => {
    expect(encodeClose(1000, 'bye')).toEqual(hex('88 05  03e8 627965'));
  });
  it('sends just the code when there is no reason', () => {
    expect(encodeClose(4408)).toEqual(hex('88 02  1138'));
  });
  it('truncates an ASCII reason to 123 bytes so the payload is exactly 125', () => {
    const [f] = parseServerFrames(encodeClose(1012, 'x'.repeat(300)));
    expect(f!.payload.length).toBe(125);
  });
  it('truncates a multi-byte reason on a UTF-8 boundary', () => {
    const [f] = parseServerFrames(encodeClose(1011, 'é'.repeat(100))); // 200 bytes
    expect(f!.payload.length).toBe(2 + 122); // 123 would split an é
    expect(isUtf8(f!.payload.subarray(2))).toBe(true);
  });
  it('always yields a payload <= 125 bytes of valid UTF-8', () => {
    fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (reason) => {
      const [f] = parseServerFrames(encodeClose(1000, reason));
      expect(f!.payload.length).toBeLessThanOrEqual(125);
      expect(isUtf8(f!.payload.subarray(2))).toBe(true);
    }), { numRuns: 100 });
  });
  it.each([1005, 1006, 1015, 999, 5000, 1000.5])('refuses to send code %s (RFC 6455 §7.4)', (code) => {
    expect(() => encodeClose(code)).toThrow(RangeError);
  });
});

describe('unmask', () => {
  it('unmasks the RFC 6455 §5.7 masked "Hello" in place', () => {
    const f = hex('81 85  37 fa 21 3d  7f 9f 4d 51 58');
    unmask(f, f, 6, 11, 2);
    expect(f.subarray(6).toString()).toBe('Hello');
  });
  it('matches the byte-wise definition for any length and alignment (word-wise path included)', () => {
    fc.assert(fc.property(
      fc.uint8Array({ minLength: 0, maxLength: 600 }), fc.integer({ min: 0, max: 7 }), fc.uint8Array({ minLength: 4, maxLength: 4 }),
      (data, pad, mask) => {
        const backing = Buffer.alloc(data.length + pad + 3);
        backing.set(data, pad);
        unmask(backing, mask, pad, pad + data.length);
        for (let i = 0; i < data.length; i++) expect(backing[pad + i]).toBe(data[i]! ^ mask[i & 3]!);
        expect(backing.subarray(0, pad).every((b) => b === 0)).toBe(true); // nothing outside the range
      },
    ), { numRuns: 300 });
  });
  it('is its own inverse on a 64 KiB payload at an odd offset', () => {
    const data = Buffer.from(Array.from({ length: 65536 }, (_, i) => (i * 31) & 0xff));
    const buf = Buffer.concat([Buffer.alloc(3), data]);
    unmask(buf, RFC_MASK, 3, buf.length);
    expect(buf.subarray(3).equals(data)).toBe(false);
    unmask(buf, RFC_MASK, 3, buf.length);
    expect(buf.subarray(3)).toEqual(data);
  });
});

describe('isValidCloseCode (RFC 6455 §7.4.1, §7.4.2)', () => {
  it.each([1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4000, 4408, 4999])(
    'accepts %i', (code) => expect(isValidCloseCode(code)).toBe(true));
  it.each([0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535, 1000.5, NaN])(
    'rejects %s', (code) => expect(isValidCloseCode(code)).toBe(false));
});

describe('decodeHeader (client frames)', () => {
  const cases: [string, string, string][] = [
    ['masked text, 5 bytes', '81 85 37fa213d', 'complete'],
    ['masked close, empty', '88 80 37fa213d', 'complete'],
    ['unmasked text', '81 05', 'UNMASKED_FRAME'],
    ['RSV1 set', 'c1 85 37fa213d', 'RESERVED_BITS'],
    ['RSV3 set', '91 85 37fa213d', 'RESERVED_BITS'],
    ['opcode 3', '83 85 37fa213d', 'BAD_OPCODE'],
    ['opcode 0xB', '8b 80 37fa213d', 'BAD_OPCODE'],
    ['ping without FIN', '09 80 37fa213d', 'CONTROL_FRAGMENTED'],
    ['ping of 126 bytes', '89 fe 007e 37fa213d', 'CONTROL_TOO_LONG'],
    ['ping of 125 bytes', '89 fd 37fa213d', 'complete'],
    ['16-bit length of 125 (not minimal)', '82 fe 007d 37fa213d', 'BAD_LENGTH'],
    ['16-bit length of 126', '82 fe 007e 37fa213d', 'complete'],
    ['64-bit length of 65535 (not minimal)', '82 ff 00000000 0000ffff 37fa213d', 'BAD_LENGTH'],
    ['64-bit length with the MSB set', '82 ff 80000000 00000000 37fa213d', 'BAD_LENGTH'],
    ['64-bit length of 2^32', '82 ff 00000001 00000000 37fa213d', 'complete'],
  ];
  it.each(cases)('%s -> %s', (_name, bytes, status) => {
    const buf = hex(bytes);
    expect(decodeHeader(buf, 0, buf.length, newHeader())).toBe(status);
  });
  it.each(cases)('%s: every proper prefix is partial or the same error', (_name, bytes, status) => {
    const buf = hex(bytes);
    for (let n = 0; n < buf.length; n++) {
      const got = decodeHeader(buf, 0, n, newHeader());
      expect([status === 'complete' ? 'partial' : status, 'partial']).toContain(got);
    }
  });
  it('reports size (mask key included) and length', () => {
    const h = newHeader();
    const f = clientFrame(OP_BINARY, Buffer.alloc(70000));
    expect(decodeHeader(f, 0, f.length, h)).toBe('complete');
    expect(h).toEqual({ fin: true, opcode: OP_BINARY, length: 70000, size: 14, masked: true });
  });
  it('decodes at an offset inside a larger buffer', () => {
    const buf = Buffer.concat([hex('ffff'), clientFrame(OP.ping, 'hi')]);
    const h = newHeader();
    expect(decodeHeader(buf, 2, buf.length, h)).toBe('complete');
    expect(h.length).toBe(2);
  });
});
