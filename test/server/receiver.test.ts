import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { PROTOCOL_ERRORS, type ProtocolError, type ProtocolErrorCode } from '../../server/ws/errors.js';
import {
  DEFAULT_MAX_FRAGMENTS, RECEIVER_STOPPED, framePhase, initReceiver, receive, type ReceiverSink, type ReceiverState,
} from '../../server/ws/receiver.js';
import { clientClose, clientFrame, clientText, hex, OP } from '../support/frames.js';

type Event =
  | ['text', string] | ['binary', string] | ['ping', string] | ['pong', string]
  | ['close', number, string] | ['error', ProtocolErrorCode, number];

interface Conn extends ReceiverState { events: Event[]; stopAfter: number }

const sink: ReceiverSink<Conn> = {
  message: (c, data, isText) => { c.events.push(isText ? ['text', data.toString('utf8')] : ['binary', data.toString('hex')]); },
  ping: (c, p) => { c.events.push(['ping', p.toString('hex')]); },
  pong: (c, p) => { c.events.push(['pong', p.toString('hex')]); },
  close: (c, code, reason) => { c.events.push(['close', code, reason]); },
  error: (c, err: ProtocolError) => { c.events.push(['error', err.code, err.closeCode]); },
  stopped: (c) => c.events.length >= c.stopAfter,
};

function newConn(): Conn {
  const c = { spill: null, frags: null, fragOpcode: 0, fragBytes: 0, events: [] as Event[], stopAfter: Infinity };
  initReceiver(c);
  return c;
}

const LIMIT = 64;

/** Feed copies of the chunks (the receiver unmasks in place) and return the events. */
function feed(chunks: Buffer[], max = LIMIT, conn = newConn()): Event[] {
  for (const ch of chunks) receive(conn, Buffer.from(ch), max, sink);
  return conn.events;
}

const bytesOf = (...frames: Buffer[]) => Buffer.concat(frames);
const h = (s: string) => Buffer.from(s).toString('hex');

// Streams with their expected events; reused by the split-anywhere test.
const streams: [string, Buffer, Event[]][] = [
  ['a masked "Hello" text frame (RFC 6455 §5.7)', hex('81 85 37fa213d 7f9f4d5158'), [['text', 'Hello']]],
  ['a fragmented text "Hel" + "lo" (RFC 6455 §5.7)', hex('01 83 37fa213d 7f9f4d  80 82 37fa213d 5b95'), [['text', 'Hello']]],
  ['a ping, a pong, a binary', bytesOf(clientFrame(OP.ping, 'Hi'), clientFrame(OP.pong, 'Hi'), clientFrame(OP.binary, hex('00ff10'))),
    [['ping', h('Hi')], ['pong', h('Hi')], ['binary', '00ff10']]],
  ['a ping interleaved inside a fragmented message', bytesOf(
    clientText('ab', { fin: false }), clientFrame(OP.ping, 'p'), clientFrame(OP.cont, 'cd', { fin: false }),
    clientFrame(OP.pong), clientFrame(OP.cont, 'ef')),
  [['ping', h('p')], ['pong', ''], ['text', 'abcdef']]],
  ['an empty text message', clientText(''), [['text', '']]],
  ['a text split inside a 4-byte character across fragments', bytesOf(
    clientText('', { fin: false }),
    clientFrame(OP.cont, Buffer.from('😀').subarray(0, 1), { fin: false }),
    clientFrame(OP.cont, Buffer.from('😀').subarray(1))), [['text', '😀']]],
  ['a 16-bit-length message of exactly the limit', clientFrame(OP.binary, Buffer.alloc(LIMIT, 1)), [['binary', '01'.repeat(LIMIT)]]],
  ['a close with code and reason', clientClose(1000, 'bye'), [['close', 1000, 'bye']]],
  ['an empty close (1005, §7.1.5)', clientClose(), [['close', 1005, '']]],
  ['text then an unmasked frame', bytesOf(clientText('ok'), clientText('no', { mask: false })),
    [['text', 'ok'], ['error', 'UNMASKED_FRAME', 1002]]],
  ['a message over the limit', clientFrame(OP.binary, Buffer.alloc(LIMIT + 1)), [['error', 'MESSAGE_TOO_BIG', 1009]]],
];

describe('receive: whole streams', () => {
  it.each(streams)('%s', (_name, bytes, expected) => {
    expect(feed([bytes])).toEqual(expected);
  });
});

describe('receive: the same bytes split anywhere give the same result', () => {
  it.each(streams)('%s, cut at every offset', (_name, bytes, expected) => {
    for (let i = 0; i <= bytes.length; i++) {
      expect(feed([bytes.subarray(0, i), bytes.subarray(i)]), `cut at ${i}`).toEqual(expected);
    }
  });
  it.each(streams)('%s, one byte per read', (_name, bytes, expected) => {
    expect(feed(Array.from(bytes, (b) => Buffer.from([b])))).toEqual(expected);
  });
});

describe('receive: protocol errors (each code, with its close code)', () => {
  const cases: [ProtocolErrorCode, Buffer][] = [
    ['UNMASKED_FRAME', clientText('x', { mask: false })],
    ['RESERVED_BITS', clientText('x', { rsv: 4 })],
    ['BAD_OPCODE', clientFrame(0x3, 'x')],
    ['CONTROL_FRAGMENTED', clientFrame(OP.ping, 'x', { fin: false })],
    ['CONTROL_TOO_LONG', clientFrame(OP.ping, Buffer.alloc(126))],
    ['UNEXPECTED_CONTINUATION', clientFrame(OP.cont, 'x')],
    ['EXPECTED_CONTINUATION', bytesOf(clientText('a', { fin: false }), clientText('b'))],
    ['BAD_LENGTH', clientFrame(OP.binary, 'short', { lengthForm: 16 })],
    ['BAD_CLOSE_PAYLOAD', clientFrame(OP.close, hex('03'))],
    ['BAD_CLOSE_CODE', clientClose(1005)],
    ['INVALID_UTF8', clientFrame(OP.text, hex('c3 28'))],
    ['MESSAGE_TOO_BIG', clientFrame(OP.binary, Buffer.alloc(LIMIT + 1))],
    ['TOO_MANY_FRAGMENTS', bytesOf(clientText('a', { fin: false }), ...Array.from({ length: DEFAULT_MAX_FRAGMENTS }, () => clientFrame(OP.cont, '', { fin: false })))],
  ];
  it('covers every code in PROTOCOL_ERRORS', () => {
    expect(new Set(cases.map(([c]) => c))).toEqual(new Set(Object.keys(PROTOCOL_ERRORS)));
  });
  it.each(cases)('%s', (code, bytes) => {
    expect(feed([bytes])).toEqual([['error', code, PROTOCOL_ERRORS[code]]]);
  });
  it.each([
    ['a close reason that is not UTF-8', bytesOf(clientFrame(OP.close, hex('03e8 ff')))],
    ['fragmented text that is not UTF-8 as a whole', bytesOf(clientText('a', { fin: false }), clientFrame(OP.cont, hex('e2 82')))],
  ])('closes with 1007 on %s', (_n, bytes) => {
    expect(feed([bytes])).toEqual([['error', 'INVALID_UTF8', 1007]]);
  });
  it.each([1004, 1006, 1015, 2999, 5000])('rejects close code %i', (code) => {
    expect(feed([clientClose(code)])).toEqual([['error', 'BAD_CLOSE_CODE', 1002]]);
  });
  it('rejects a 64-bit length with the most significant bit set', () => {
    expect(feed([hex('82 ff 80000000 00000000 37fa213d')])).toEqual([['error', 'BAD_LENGTH', 1002]]);
  });
});

describe('receive: limits', () => {
  it('accepts a control payload of 125 bytes and rejects 126', () => {
    expect(feed([clientFrame(OP.ping, Buffer.alloc(125))], 1)[0]![0]).toBe('ping');
    expect(feed([clientFrame(OP.ping, Buffer.alloc(126))], 1000)).toEqual([['error', 'CONTROL_TOO_LONG', 1002]]);
  });
  it('accepts a single-frame message exactly at the limit and rejects one byte more', () => {
    expect(feed([clientText('x'.repeat(1000))], 1000)).toEqual([['text', 'x'.repeat(1000)]]);
    expect(feed([clientText('x'.repeat(1001))], 1000)).toEqual([['error', 'MESSAGE_TOO_BIG', 1009]]);
  });
  it('counts fragments together: exactly the limit passes, one byte more fails', () => {
    const frags = (last: number) => [clientText('x'.repeat(400), { fin: false }), clientFrame(OP.cont, 'y'.repeat(400), { fin: false }),
      clientFrame(OP.cont, 'z'.repeat(last))];
    expect(feed(frags(200), 1000)).toEqual([['text', 'x'.repeat(400) + 'y'.repeat(400) + 'z'.repeat(200)]]);
    expect(feed(frags(201), 1000)).toEqual([['error', 'MESSAGE_TOO_BIG', 1009]]);
  });
  it('rejects an oversized frame from its header alone, before any payload arrives', () => {
    const conn = newConn();
    receive(conn, hex('82 ff 00000000 40000000 37fa213d'), 65536, sink); // declares 1 GiB
    expect(conn.events).toEqual([['error', 'MESSAGE_TOO_BIG', 1009]]);
    expect(conn.spill).toBeNull();
  });
});

describe('receive: buffers held', () => {
  it('holds nothing between messages', () => {
    const conn = newConn();
    receive(conn, bytesOf(clientText('a'), clientFrame(OP.ping)), LIMIT, sink);
    expect([conn.spill, conn.frags, conn.fragBytes, framePhase(conn)]).toEqual([null, null, 0, 'start']);
  });
  it('keeps a split header in a spill under 14 bytes, then drops it', () => {
    const conn = newConn();
    const f = clientFrame(OP.binary, Buffer.alloc(70000), {});
    receive(conn, f.subarray(0, 5), 100_000, sink);
    expect(framePhase(conn)).toBe('header');
    expect(conn.spill!.length).toBe(5);
    receive(conn, f.subarray(5, 20), 100_000, sink);
    expect(framePhase(conn)).toBe('payload');
    receive(conn, f.subarray(20), 100_000, sink);
    expect(conn.spill).toBeNull();
    expect(conn.events).toEqual([['binary', '00'.repeat(70000)]]);
  });
  it('copies fragments out of the chunk, so a reused read buffer cannot corrupt them', () => {
    const conn = newConn();
    const chunk = clientText('abc', { fin: false });
    receive(conn, chunk, LIMIT, sink);
    chunk.fill(0);
    receive(conn, clientFrame(OP.cont, 'def'), LIMIT, sink);
    expect(conn.events).toEqual([['text', 'abcdef']]);
  });
  it(`accepts a message in exactly maxFragments frames (default ${DEFAULT_MAX_FRAGMENTS}) and fails one frame past it with 1009`, () => {
    const ok = newConn();
    receive(ok, clientText('', { fin: false }), 1000, sink);
    for (let i = 1; i < DEFAULT_MAX_FRAGMENTS - 1; i++) receive(ok, clientFrame(OP.cont, String(i % 10), { fin: false }), 1000, sink);
    receive(ok, clientFrame(OP.cont, '!'), 1000, sink);
    expect(ok.events).toHaveLength(1);
    expect(ok.events[0]![0]).toBe('text');

    const past = newConn();
    receive(past, clientText('', { fin: false }), 1000, sink);
    for (let i = 1; i < DEFAULT_MAX_FRAGMENTS; i++) receive(past, clientFrame(OP.cont, '', { fin: false }), 1000, sink);
    expect(past.events).toEqual([]);
    receive(past, clientFrame(OP.cont, ''), 1000, sink);
    expect(past.events).toEqual([['error', 'TOO_MANY_FRAGMENTS', 1009]]);
    expect([past.spill, past.frags]).toEqual([null, null]);
  });
  it('closes an endless run of empty continuation frames after maxFragments, whatever the size limit', () => {
    const conn = newConn();
    receive(conn, clientText('x', { fin: false }), 65536, sink, 8);
    let frames = 1;
    // Bounded: the attack is 18 million frames; 10,000 shows it is cut off.
    for (let i = 0; i < 10_000 && conn.events.length === 0; i++, frames++) receive(conn, clientFrame(OP.cont, '', { fin: false }), 65536, sink, 8);
    expect(conn.events).toEqual([['error', 'TOO_MANY_FRAGMENTS', 1009]]);
    expect(frames).toBe(9);
  });
  it('keeps the pieces as they came and joins them once (a large first fragment is never copied again mid-message)', () => {
    const conn = newConn();
    const big = 'a'.repeat(60_000);
    receive(conn, clientText(big, { fin: false }), 100_000, sink);
    const first = conn.frags![0]!;
    for (let i = 0; i < 120; i++) receive(conn, clientFrame(OP.cont, '', { fin: false }), 100_000, sink);
    expect(conn.frags![0]).toBe(first);
    receive(conn, clientFrame(OP.cont, '!'), 100_000, sink);
    expect(conn.events).toEqual([['text', big + '!']]);
  });
});

describe('receive: stopping', () => {
  it('ignores the rest of the chunk and later chunks after a close frame', () => {
    const conn = newConn();
    receive(conn, bytesOf(clientClose(1001, 'away'), clientText('late')), LIMIT, sink);
    receive(conn, clientText('later'), LIMIT, sink);
    expect(conn.events).toEqual([['close', 1001, 'away']]);
    expect(conn.fragOpcode).toBe(RECEIVER_STOPPED);
  });
  it('ignores everything after an error and releases its buffers', () => {
    const conn = newConn();
    receive(conn, bytesOf(clientText('a', { fin: false }), clientFrame(0x3), clientText('x')), LIMIT, sink);
    receive(conn, clientText('y'), LIMIT, sink);
    expect(conn.events).toEqual([['error', 'BAD_OPCODE', 1002]]);
    expect([conn.spill, conn.frags]).toEqual([null, null]);
  });
  it('stops between frames when the sink says the connection is stopped', () => {
    const conn = newConn();
    conn.stopAfter = 1;
    receive(conn, bytesOf(clientText('hello'), clientText('second')), LIMIT, sink);
    expect(conn.events).toEqual([['text', 'hello']]);
  });
  it('parses again after initReceiver', () => {
    const conn = newConn();
    receive(conn, clientClose(1000), LIMIT, sink);
    initReceiver(conn);
    receive(conn, clientText('again'), LIMIT, sink);
    expect(conn.events).toEqual([['close', 1000, ''], ['text', 'again']]);
  });
});

// ---- properties ----

type Msg = { text: boolean; body: Buffer };
const msgArb = fc.record({
  text: fc.boolean(),
  str: fc.string({ unit: 'grapheme', maxLength: 40 }),
  bin: fc.uint8Array({ maxLength: 300 }),
}).map(({ text, str, bin }): Msg => ({ text, body: text ? Buffer.from(str) : Buffer.from(bin) }));
const planArb = fc.array(fc.record({
  msg: msgArb,
  cuts: fc.array(fc.nat(), { maxLength: 3 }),          // fragment boundaries
  controls: fc.array(fc.constantFrom(OP.ping, OP.pong), { maxLength: 2 }),
  mask: fc.uint8Array({ minLength: 4, maxLength: 4 }),
}), { maxLength: 8 });
type Plan = typeof planArb extends fc.Arbitrary<infer T> ? T : never;

/** Encode a message as fragments (cut anywhere, even inside a UTF-8 character) with
 *  control frames interleaved between fragments; return bytes and the expected events. */
function encodePlan(plan: Plan): { bytes: Buffer; expected: Event[] } {
  const frames: Buffer[] = [];
  const expected: Event[] = [];
  for (const { msg, cuts, controls, mask } of plan) {
    const points = [...new Set(cuts.map((c) => c % (msg.body.length + 1)))].sort((a, b) => a - b);
    const pieces = [0, ...points, msg.body.length].slice(1).map((end, i, ends) => msg.body.subarray(i === 0 ? 0 : ends[i - 1]!, end));
    pieces.forEach((p, i) => {
      frames.push(clientFrame(i === 0 ? (msg.text ? OP.text : OP.binary) : OP.cont, p, { fin: i === pieces.length - 1, mask }));
      if (i < pieces.length - 1 && controls[i] !== undefined) {
        frames.push(clientFrame(controls[i]!, 'c', { mask }));
        expected.push([controls[i] === OP.ping ? 'ping' : 'pong', h('c')]);
      }
    });
    expected.push(msg.text ? ['text', msg.body.toString('utf8')] : ['binary', msg.body.toString('hex')]);
  }
  return { bytes: Buffer.concat(frames), expected };
}

function splitAt(bytes: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  return [0, ...points, bytes.length].slice(1).map((end, i, ends) => bytes.subarray(i === 0 ? 0 : ends[i - 1]!, end));
}

describe('receive: properties', () => {
  it('decodes encoded frames split at random points into exactly the same messages', () => {
    fc.assert(fc.property(planArb, fc.array(fc.nat(), { maxLength: 12 }), (plan, cuts) => {
      const { bytes, expected } = encodePlan(plan);
      expect(feed(splitAt(bytes, cuts), 1024)).toEqual(expected);
    }), { numRuns: 300 });
  });

  const endsWell = (events: Event[]) => {
    const errors = events.filter((e) => e[0] === 'error');
    expect(errors.length).toBeLessThanOrEqual(1);
    if (errors.length === 1) expect(events.at(-1)![0]).toBe('error');
  };
  it('never throws on random bytes: messages and at most one error, last', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), fc.array(fc.nat(), { maxLength: 5 }), (raw, cuts) => {
      endsWell(feed(splitAt(Buffer.from(raw), cuts), 100));
    }), { numRuns: 500 });
  });
  it('never throws on mutated valid streams', () => {
    fc.assert(fc.property(planArb, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
      fc.array(fc.nat(), { maxLength: 5 }), (plan, edits, cuts) => {
        const { bytes } = encodePlan(plan);
        if (bytes.length === 0) return;
        for (const [at, v] of edits) bytes[at % bytes.length] = v;
        endsWell(feed(splitAt(bytes, cuts), 100));
      }), { numRuns: 300 });
  });
});
