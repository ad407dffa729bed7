/**
 * The vendored reconnecting-websocket (src/vendor/reconnecting-websocket.ts):
 * each fix listed in its header, on fake sockets and the manual clock. Where
 * upstream 4.4.0 can be driven the same way, the test shows it failing.
 */
import UpstreamImport from 'reconnecting-websocket';
import { describe, expect, it } from 'vitest';
import RWS, { type CloseInfo } from '../../src/vendor/reconnecting-websocket.js';
import { flush, manualClock } from '../support/clock.js';

class FakeSocket {
  static made: FakeSocket[] = [];
  readyState = 0;
  onopen: (() => void) | null = null;
  onmessage: ((e: { data: string }) => void) | null = null;
  onclose: ((e: { code: number; reason: string }) => void) | null = null;
  sent: string[] = [];
  closedWith?: number;
  constructor(readonly url: string) {
    FakeSocket.made.push(this);
  }
  send(d: string) {
    this.sent.push(d);
  }
  close(code?: number) {
    this.closedWith = code;
    this.readyState = 3;
  }
  open() {
    this.readyState = 1;
    this.onopen?.();
  }
  end(code: number, reason = '') {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
}

function make(o: { url?: () => string | Promise<string>; create?: (u: string) => WebSocket; delay?: (n: number) => number } = {}) {
  FakeSocket.made = [];
  const clock = manualClock();
  const delays: number[] = [];
  const errors: unknown[] = [];
  const closes: CloseInfo[] = [];
  const r = new RWS(o.url ?? (() => 'ws://x/v1/ws'), 'tidings.v1', {
    create: o.create ?? ((u) => new FakeSocket(u) as unknown as WebSocket),
    delay: (n) => (delays.push(n), o.delay ? o.delay(n) : 1000),
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
  });
  r.onerror = (e) => errors.push(e);
  r.onclose = (e) => closes.push(e);
  const step = async (ms: number) => {
    clock.advance(ms);
    await flush(3);
  };
  return { r, clock, delays, errors, closes, step };
}

describe('vendored reconnecting-websocket', () => {
  it('fix 1: a URL provider that rejects is reported and the cycle goes on (upstream stalls for good)', async () => {
    let n = 0;
    const t = make({ url: () => (n++ === 0 ? Promise.reject(new Error('token down')) : 'ws://x/v1/ws') });
    await t.step(1000);
    expect(t.errors).toEqual([new Error('token down')]);
    await t.step(1000);
    expect(FakeSocket.made).toHaveLength(1);

    // Upstream 4.4.0, same provider: no socket, ever.
    const Upstream = UpstreamImport as unknown as new (u: () => Promise<string>, p: string, o: object) => { close(): void };
    let m = 0;
    const made: unknown[] = [];
    const WS = Object.assign(function (this: unknown) { made.push(this); return { addEventListener() {}, removeEventListener() {}, close() {} }; }, { CLOSING: 2 });
    process.on('unhandledRejection', swallow);
    const up = new Upstream(() => (m++ === 0 ? Promise.reject(new Error('token down')) : Promise.resolve('ws://x')), '', { WebSocket: WS, minReconnectionDelay: 1, maxReconnectionDelay: 1 });
    await new Promise((r) => setTimeout(r, 100));
    up.close();
    process.off('unhandledRejection', swallow);
    expect(made).toHaveLength(0);
  });

  it('fix 2: a constructor that throws (CSP, blocked port) is reported and retried', async () => {
    let n = 0;
    const t = make({
      create: (u) => {
        if (n++ === 0) throw new DOMException('blocked', 'SecurityError');
        return new FakeSocket(u) as unknown as WebSocket;
      },
    });
    await t.step(1000);
    expect((t.errors[0] as DOMException).name).toBe('SecurityError');
    await t.step(1000);
    expect(FakeSocket.made).toHaveLength(1);
  });

  it('fix 3 and 4: delay(n) is asked before every attempt, after onclose saw the real close code', async () => {
    const order: string[] = [];
    const t = make({ delay: (n) => (order.push(`delay ${n}`), 100) });
    t.r.onclose = (e) => order.push(`close ${e.code} ${e.reason}`);
    await t.step(100);
    FakeSocket.made[0]!.open();
    FakeSocket.made[0]!.end(1011, 'boom');
    await t.step(100);
    FakeSocket.made[1]!.end(1006);
    await t.step(0);
    expect(order).toEqual(['delay 0', 'close 1011 boom', 'delay 1', 'close 1006 ', 'delay 2']);
  });

  it('fix 5: reconnect() during a wait cuts it short; close() stops the cycle and a wait ends quietly', async () => {
    const t = make({ delay: () => 60_000 });
    t.r.reconnect();
    await t.step(0);
    expect(FakeSocket.made).toHaveLength(1);
    FakeSocket.made[0]!.open();
    t.r.reconnect(1000, 'again'); // drops the live socket: onclose with our code, then at once a new one
    expect(t.closes).toEqual([{ code: 1000, reason: 'again' }]);
    expect(FakeSocket.made[0]!.closedWith).toBe(1000);
    await t.step(0);
    t.r.close();
    await t.step(600_000);
    expect(FakeSocket.made).toHaveLength(1);
    expect(t.clock.pending()).toEqual([]);
  });

  it('send() goes to an open socket only (no queue: the SDK sends only hello on open and pong)', async () => {
    const t = make({ delay: () => 0 });
    await t.step(0);
    const s = FakeSocket.made[0]!;
    t.r.send('early');
    s.open();
    t.r.send('late');
    expect(s.sent).toEqual(['late']);
  });
});

function swallow() {}
