// The WebSocket conversation after the 101, end to end over loopback, with the
// `ws` npm package as an independent client (raw sockets where `ws` would refuse
// to send the bytes). Deadlines run on the wheel's fake clock: no test sleeps
// on real time to provoke a timeout.
import { afterEach, describe, expect, it } from 'vitest';
import type { Config } from '../../server/config.js';
import { overOutboundLimit } from '../../server/ws/connection.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { clientClose, clientFrame, clientText, OP } from '../support/frames.js';
import { closeCodeOf, openWs, rawUpgrade, subscribe, type Msg } from '../support/ws-client.js';
import { TEST_EPOCH, TEST_PUBLISHER_KEY } from '../support/context.js';
import { MemoryBus } from '../../server/pubsub/memory-bus.js';

const T0 = 1_000_000;
let servers: TestServer[] = [];
let clock = T0;

/**
 * A memory bus whose reads take real time on both sides of the read: events
 * published before the read lands in history AND in the connection's live
 * queue (a duplicate to drop); events published after it only in the queue
 * (a gap if the queue were ignored). Like a networked bus would.
 */
class SlowReadBus extends MemoryBus {
  override async readAfter(channel: string, cursor: string) {
    await new Promise((r) => setTimeout(r, 3));
    const r = await super.readAfter(channel, cursor);
    await new Promise((r) => setTimeout(r, 3));
    return r;
  }
  override async head(channel: string) {
    await new Promise((r) => setTimeout(r, 2));
    return super.head(channel);
  }
}

/** A server on a fake clock with a 10 ms wheel tick and a predictable cursor epoch. */
async function start(overrides: Partial<Config> = {}, slowReads = false): Promise<TestServer> {
  clock = T0;
  const history = overrides.history ?? 1000;
  const bus = slowReads ? new SlowReadBus({ history, epoch: TEST_EPOCH }) : new MemoryBus({ history, epoch: TEST_EPOCH });
  const s = await startTestServer(
    { pingMs: 1000, pongGraceMs: 500, helloTimeoutMs: 2000, ...overrides },
    { now: () => clock, tickMs: 10, bus },
  );
  servers.push(s);
  return s;
}
/** Move the fake clock and fire what is due. */
function advance(s: TestServer, ms: number): void {
  clock += ms;
  s.server.wheel.advance(clock);
}
const cur = (n: number) => `${TEST_EPOCH}-${n}`;

afterEach(async () => {
  await Promise.all(servers.map((s) => s.close()));
  servers = [];
});

describe('hello and welcome', () => {
  it('answers hello with welcome: the ping interval and every channel head, and selects tidings.v1', async () => {
    const s = await start();
    await s.publish('user:42', { n: 1 });
    const { c, welcome } = await subscribe(s.wsUrl, await s.token(['user:42', 'news']), { 'user:42': null, news: null });
    expect(c.ws.protocol).toBe('tidings.v1');
    expect(welcome).toEqual({ type: 'welcome', ping: 1000, channels: { 'user:42': cur(1), news: cur(0) } });
    expect(s.ctx.control.connections()).toBe(1);
  });

  it('delivers live events published after welcome, in order, with cursor and data', async () => {
    const s = await start();
    const { c } = await subscribe(s.wsUrl, await s.token(['user:42']), { 'user:42': null });
    await s.publish('user:42', { n: 1 });
    await s.publish('user:42', { n: 2 });
    expect(await c.next()).toEqual({ type: 'event', channel: 'user:42', cursor: cur(1), data: { n: 1 } });
    expect(await c.next()).toEqual({ type: 'event', channel: 'user:42', cursor: cur(2), data: { n: 2 } });
  });

  it('accepts a hello pipelined in the same packet as the handshake', async () => {
    const s = await start();
    const token = await s.token(['a']);
    const { rawConnect, UPGRADE_HEAD, headEnd } = await import('../support/ws-client.js');
    const { parseServerFrames } = await import('../support/frames.js');
    const raw = await rawConnect(s.port);
    raw.socket.write(Buffer.concat([Buffer.from(UPGRADE_HEAD()), clientText(JSON.stringify({ type: 'hello', token, channels: { a: null } }))]));
    const b = await raw.until((x) => headEnd(x) > 0 && x.includes('welcome'));
    const [f] = parseServerFrames(b.subarray(headEnd(b)));
    expect(JSON.parse(f!.payload.toString())).toMatchObject({ type: 'welcome' });
    raw.socket.destroy();
  });
});

describe('close codes', () => {
  it('echoes a client close 1000 and ends the connection', async () => {
    const s = await start();
    const { c } = await subscribe(s.wsUrl, await s.token(['a']), { a: null });
    c.ws.close(1000, 'bye');
    expect((await c.closed).code).toBe(1000);
    await expect.poll(() => s.ctx.control.connections()).toBe(0);
  });

  it('echoes a close without status code with an empty close frame', async () => {
    const s = await start();
    const raw = await rawUpgrade(s.port);
    raw.socket.write(clientClose());
    await raw.ended;
    const frames = raw.frames();
    expect(frames).toHaveLength(1);
    expect(frames[0]!.opcode).toBe(OP.close);
    expect(frames[0]!.payload.length).toBe(0);
  });

  it.each([
    ['an unmasked frame', clientText('{}', { mask: false })],
    ['reserved bits', clientText('{}', { rsv: 4 })],
    ['a reserved opcode', clientFrame(0x3, 'x')],
    ['a fragmented ping', clientFrame(OP.ping, 'x', { fin: false })],
  ])('closes 1002 on %s', async (_name, bytes) => {
    const s = await start();
    const raw = await rawUpgrade(s.port);
    raw.socket.write(bytes);
    await raw.ended;
    const [f] = raw.frames();
    expect(f!.opcode).toBe(OP.close);
    expect(closeCodeOf(f!)).toBe(1002);
  });

  it('closes 1007 on a text frame that is not valid UTF-8', async () => {
    const s = await start();
    const raw = await rawUpgrade(s.port);
    raw.socket.write(clientFrame(OP.text, Uint8Array.from([0x7b, 0xff, 0x7d])));
    await raw.ended;
    expect(closeCodeOf(raw.frames()[0]!)).toBe(1007);
  });

  it('accepts a message of exactly maxMessageBytes and closes 1009 one byte past it', async () => {
    const s = await start({ maxMessageBytes: 1024 });
    const token = await s.token(['a']);
    const base = JSON.stringify({ type: 'hello', token, channels: { a: null } });
    const at = base.slice(0, -1) + ' '.repeat(1024 - base.length) + '}';
    expect(Buffer.byteLength(at)).toBe(1024);
    const ok = await openWs(s.wsUrl);
    ok.send(at);
    expect((await ok.next()).type).toBe('welcome');

    const past = base.slice(0, -1) + ' '.repeat(1025 - base.length) + '}';
    const bad = await openWs(s.wsUrl);
    bad.send(past);
    expect((await bad.closed).code).toBe(1009);
  });

  it.each([
    ['not JSON', 'hello?'],
    ['a JSON value that is not an object', '[1,2]'],
    ['an unknown type', '{"type":"subscribe","channels":{"a":null}}'],
    ['a bad channel name', '{"type":"hello","token":"x","channels":{"a b":null}}'],
    ['channels not an object', '{"type":"hello","token":"x","channels":["a"]}'],
    ['a cursor that is neither string nor null', '{"type":"hello","token":"x","channels":{"a":5}}'],
    ['no channels', '{"type":"hello","token":"x","channels":{}}'],
  ])('closes 4400 on a hello that is %s', async (_name, text) => {
    const s = await start();
    const c = await openWs(s.wsUrl);
    c.send(text);
    expect((await c.closed).code).toBe(4400);
  });

  it('closes 4400 on a binary hello', async () => {
    const s = await start();
    const c = await openWs(s.wsUrl);
    c.ws.send(Buffer.from('{"type":"hello"}'));
    expect((await c.closed).code).toBe(4400);
  });

  it('accepts exactly maxChannels channels and closes 4400 past it', async () => {
    const s = await start({ maxChannels: 3 });
    const names = ['a', 'b', 'c', 'd'];
    const token = await s.token(names);
    const ok = await subscribe(s.wsUrl, token, { a: null, b: null, c: null });
    expect(Object.keys(ok.welcome.channels as object)).toHaveLength(3);
    const bad = await openWs(s.wsUrl);
    bad.send({ type: 'hello', token, channels: { a: null, b: null, c: null, d: null } });
    expect((await bad.closed).code).toBe(4400);
  });

  it('closes 4400 when hello is sent twice', async () => {
    const s = await start();
    const token = await s.token(['a']);
    const { c } = await subscribe(s.wsUrl, token, { a: null });
    c.send({ type: 'hello', token, channels: { a: null } });
    expect(await c.closed).toEqual({ code: 4400, reason: 'bad hello: sent twice' });
  });

  it.each([
    ['missing', async () => undefined],
    ['not a JWT', async () => 'not-a-token'],
    ['signed with another secret', async (s: TestServer) => (await s.token(['a'])).slice(0, -4) + 'AAAA'],
    ['expired', async (s: TestServer) => s.token(['a'], -10)],
  ])('closes 4401 when the token is %s', async (_name, make) => {
    const s = await start();
    const token = await make(s);
    const c = await openWs(s.wsUrl);
    c.send({ type: 'hello', ...(token === undefined ? {} : { token }), channels: { a: null } });
    expect((await c.closed).code).toBe(4401);
  });

  it('closes 4403 when a channel is not granted by the token', async () => {
    const s = await start();
    const c = await openWs(s.wsUrl);
    c.send({ type: 'hello', token: await s.token(['a']), channels: { a: null, b: null } });
    expect(await c.closed).toEqual({ code: 4403, reason: 'channel not granted: b' });
  });

  it('closes 4400 on any client message other than pong after welcome', async () => {
    const s = await start();
    const { c } = await subscribe(s.wsUrl, await s.token(['a']), { a: null });
    c.send({ type: 'subscribe' });
    expect((await c.closed).code).toBe(4400);
  });
});

describe('deadlines (fake clock)', () => {
  it('keeps a connection without hello until helloTimeoutMs, and closes it 4408 after', async () => {
    const s = await start({ helloTimeoutMs: 2000 });
    const late = await openWs(s.wsUrl);
    const lost = await openWs(s.wsUrl);
    advance(s, 1990); // one tick before the deadline
    late.send({ type: 'hello', token: await s.token(['a']), channels: { a: null } });
    expect((await late.next()).type).toBe('welcome');
    advance(s, 20);
    expect(await lost.closed).toEqual({ code: 4408, reason: 'no hello in time' });
    late.ws.close();
  });

  it('pings after pingMs of silence and closes 4408 when no pong comes within pongGraceMs', async () => {
    const s = await start({ pingMs: 1000, pongGraceMs: 500 });
    const { c } = await subscribe(s.wsUrl, await s.token(['a']), { a: null });
    advance(s, 990);
    advance(s, 30);
    expect(await c.next()).toEqual({ type: 'ping' });
    advance(s, 480);
    expect(c.ws.readyState).toBe(c.ws.OPEN);
    advance(s, 40);
    expect(await c.closed).toEqual({ code: 4408, reason: 'no pong in time' });
  });

  it('stays open while the client answers every ping with pong', async () => {
    const s = await start({ pingMs: 1000, pongGraceMs: 500 });
    const { c } = await subscribe(s.wsUrl, await s.token(['a']), { a: null });
    for (let i = 0; i < 3; i++) {
      advance(s, 1020);
      expect(await c.next()).toEqual({ type: 'ping' });
      c.send({ type: 'pong' });
      await expect.poll(() => s.server.runtime.conns.values().next().value?.state).toBe(3 /* OPEN */);
    }
    advance(s, 600);
    expect(c.ws.readyState).toBe(c.ws.OPEN);
  });

  it('takes a pong written another way (spacing, extra members) as a pong too, and a binary one as a protocol error', async () => {
    const s = await start({ pingMs: 1000, pongGraceMs: 500 });
    const { c } = await subscribe(s.wsUrl, await s.token(['a']), { a: null });
    for (const text of ['{ "type" : "pong" }', '{"type":"pong","at":1}']) {
      advance(s, 1020);
      expect(await c.next()).toEqual({ type: 'ping' });
      c.ws.send(text);
      await expect.poll(() => s.server.runtime.conns.values().next().value?.state).toBe(3 /* OPEN */);
    }
    advance(s, 1020);
    expect(await c.next()).toEqual({ type: 'ping' });
    c.ws.send(Buffer.from('{"type":"pong"}'), { binary: true });
    expect((await c.closed).code).toBe(4400);
  });

  it('does not ping while events keep the connection busy (pings fill silence only)', async () => {
    const s = await start({ pingMs: 1000 });
    const { c } = await subscribe(s.wsUrl, await s.token(['a']), { a: null });
    advance(s, 600);
    await s.publish('a', 1);
    advance(s, 600); // 1200 ms since welcome, 600 since the event
    await s.publish('a', 2);
    expect((await c.next()).type).toBe('event');
    expect((await c.next()).type).toBe('event');
    advance(s, 1100);
    expect(await c.next()).toEqual({ type: 'ping' });
  });

  it('sends nothing and closes nothing while frozen', async () => {
    const s = await start({ pingMs: 1000, pongGraceMs: 500, helloTimeoutMs: 2000 });
    const { c } = await subscribe(s.wsUrl, await s.token(['a']), { a: null });
    s.ctx.control.frozen = true;
    await s.publish('a', 1);
    advance(s, 5000);
    advance(s, 5000);
    s.ctx.control.frozen = false;
    await s.publish('a', 2);
    expect(await c.next()).toMatchObject({ type: 'event', data: 2 });
    expect(c.queue).toEqual([]);
  });
});

describe('protocol frames', () => {
  it('answers a ping frame with a pong carrying the same payload', async () => {
    const s = await start();
    const { c } = await subscribe(s.wsUrl, await s.token(['a']), { a: null });
    const pong = new Promise<Buffer>((r) => c.ws.once('pong', r));
    c.ws.ping(Buffer.from('are you there?'));
    expect((await pong).toString()).toBe('are you there?');
  });

  it('assembles a fragmented hello with a ping interleaved, answering the ping first', async () => {
    const s = await start();
    const token = await s.token(['a']);
    const hello = JSON.stringify({ type: 'hello', token, channels: { a: null } });
    const raw = await rawUpgrade(s.port);
    raw.socket.write(clientFrame(OP.text, hello.slice(0, 10), { fin: false }));
    raw.socket.write(clientFrame(OP.ping, 'p1'));
    raw.socket.write(clientFrame(OP.cont, hello.slice(10), { fin: true }));
    await raw.until(() => { try { return raw.frames().length >= 2; } catch { return false; } });
    const [pong, welcome] = raw.frames();
    expect(pong).toMatchObject({ opcode: OP.pong });
    expect(pong!.payload.toString()).toBe('p1');
    expect(JSON.parse(welcome!.payload.toString())).toMatchObject({ type: 'welcome' });
    raw.socket.destroy();
  });
});

describe('resume, reset, replay-then-live', () => {
  it('replays every event after the client cursor, in order, then goes live', async () => {
    const s = await start();
    for (let i = 1; i <= 5; i++) await s.publish('user:1', { i });
    const { c, welcome } = await subscribe(s.wsUrl, await s.token(['user:1']), { 'user:1': cur(2) });
    expect(welcome.channels).toEqual({ 'user:1': cur(5) });
    const got = [await c.next(), await c.next(), await c.next()];
    expect(got.map((m) => m.cursor)).toEqual([cur(3), cur(4), cur(5)]);
    expect(got.map((m) => (m.data as { i: number }).i)).toEqual([3, 4, 5]);
    await s.publish('user:1', { i: 6 });
    expect(await c.next()).toMatchObject({ cursor: cur(6), data: { i: 6 } });
  });

  it.each([
    ['from another epoch (before a restart)', 'zzzzzz-3'],
    ['malformed', 'not a cursor!'],
    ['older than the retained history', cur(1)],
    ['ahead of the head', cur(99)],
  ])('sends one reset with the head for a cursor %s', async (_name, cursor) => {
    const s = await start({ history: 3 });
    for (let i = 1; i <= 6; i++) await s.publish('a', i);
    const { c } = await subscribe(s.wsUrl, await s.token(['a']), { a: cursor });
    expect(await c.next()).toEqual({ type: 'reset', channel: 'a', cursor: cur(6) });
    await s.publish('a', 7);
    expect(await c.next()).toMatchObject({ type: 'event', cursor: cur(7) });
  });

  it('delivers every event exactly once across replay and live while publishing concurrently', async () => {
    const s = await start({}, true);
    const N = 300;
    await s.publish('a', 0);
    let stop = false;
    let published = 1;
    const publisher = (async () => {
      while (!stop && published < N) {
        await s.publish('a', published++);
        await new Promise((r) => setImmediate(r));
      }
    })();
    const clients = [];
    for (let k = 0; k < 6; k++) {
      // Each client starts at a different moment of the publishing, from a cursor or from now.
      clients.push(subscribe(s.wsUrl, await s.token(['a']), { a: k % 2 === 0 ? cur(1) : null }).then((x) => ({ ...x, from: k % 2 === 0 ? 1 : Number(String((x.welcome.channels as Record<string, string>).a).split('-')[1]) })));
      await new Promise((r) => setTimeout(r, 4));
    }
    await publisher;
    for (const p of clients) {
      const { c, from } = await p;
      const seen: number[] = [];
      while (seen.length < N - from) {
        const m: Msg = await c.next();
        expect(m.type).toBe('event');
        seen.push(Number(String(m.cursor).split('-')[1]));
      }
      expect(seen).toEqual(Array.from({ length: N - from }, (_, i) => i + from + 1));
      expect(c.queue).toEqual([]);
    }
    stop = true;
  });
});

describe('composition', () => {
  it('delivers an event published over HTTP to a WebSocket subscriber on the same port', async () => {
    const s = await start();
    const { c } = await subscribe(s.wsUrl, await s.token(['user:7']), { 'user:7': null });
    const res = await fetch(`${s.url}/v1/publish`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_PUBLISHER_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ channel: 'user:7', data: { unread: 3 } }),
    });
    expect(res.status).toBe(200);
    const { cursor } = (await res.json()) as { cursor: string };
    expect(await c.next()).toEqual({ type: 'event', channel: 'user:7', cursor, data: { unread: 3 } });
  });

  it('control.dropAll closes every connection with the given code, or destroys them with 0', async () => {
    const s = await start();
    const token = await s.token(['a']);
    const a = await subscribe(s.wsUrl, token, { a: null });
    expect(s.ctx.control.dropAll(1011)).toBe(1);
    expect((await a.c.closed).code).toBe(1011);
    const b = await subscribe(s.wsUrl, token, { a: null });
    await expect.poll(() => s.ctx.control.connections()).toBe(1);
    expect(s.ctx.control.dropAll(0)).toBe(1);
    expect((await b.c.closed).code).toBe(1006); // no close frame: abrupt
    await expect.poll(() => s.ctx.control.connections()).toBe(0);
  });

  it('forgets a connection and its subscriptions when the client vanishes', async () => {
    const s = await start();
    const { c } = await subscribe(s.wsUrl, await s.token(['a', 'b']), { a: null, b: null });
    expect(s.server.hub.count('a')).toBe(1);
    c.ws.terminate();
    await expect.poll(() => s.ctx.control.connections()).toBe(0);
    expect(s.server.hub.channels).toBe(0);
    expect((s.ctx.bus as MemoryBus).isWatched('a')).toBe(false);
  });
});

/** A memory bus whose head() waits until the test opens the gate: the connection stays SUBSCRIBING meanwhile. */
class GatedBus extends MemoryBus {
  private open!: () => void;
  private gate = new Promise<void>((r) => { this.open = r; });
  release(): void { this.open(); }
  override async head(channel: string) {
    await this.gate;
    return super.head(channel);
  }
}

describe('slow consumer', () => {
  it('writes while the send buffer stays within maxOutboundBytes and refuses one byte past it', () => {
    expect(overOutboundLimit(900, 100, 1000)).toBe(false);
    expect(overOutboundLimit(901, 100, 1000)).toBe(true);
  });

  it('replays a history many times maxOutboundBytes to a client that reads, at its pace, without closing', async () => {
    const s = await start({ maxOutboundBytes: 16 * 1024 });
    // 10 MB: more than loopback's socket buffers absorb in one go.
    const data = 'y'.repeat(16_000);
    for (let i = 0; i < 640; i++) await s.publish('a', data);
    const { c } = await subscribe(s.wsUrl, await s.token(['a']), { a: cur(0) });
    for (let i = 1; i <= 640; i++) expect((await c.next()).cursor).toBe(cur(i));
    await s.publish('a', 'live');
    expect(await c.next()).toMatchObject({ cursor: cur(641), data: 'live' });
  });

  it.each([
    ['within', 2, 'welcome'],
    ['past', 3, 'closed 1013'],
  ])('bounds live events queued during the replay by maxOutboundBytes (%s it)', async (_name, count, outcome) => {
    const bus = new GatedBus({ epoch: TEST_EPOCH });
    clock = T0;
    const s = await startTestServer({ maxOutboundBytes: 10_000 }, { now: () => clock, tickMs: 10, bus });
    servers.push(s);
    const c = await openWs(s.wsUrl);
    c.send({ type: 'hello', token: await s.token(['a']), channels: { a: null } });
    await expect.poll(() => s.server.hub.count('a')).toBe(1); // subscribed, head not read yet
    // Each event frame is about 4 KB: two fit in 10,000 bytes, three do not.
    for (let i = 0; i < count; i++) await s.publish('a', 'z'.repeat(4000));
    bus.release();
    if (outcome === 'welcome') {
      expect((await c.next()).type).toBe('welcome');
    } else {
      expect((await c.closed).code).toBe(1013);
    }
  });

  it('closes 1013 a client that does not read, after the events it had room for', async () => {
    const s = await start({ maxOutboundBytes: 256 * 1024 });
    const { c } = await subscribe(s.wsUrl, await s.token(['a']), { a: null });
    c.ws.pause(); // stop reading: the kernel buffers fill, then ours
    const big = 'x'.repeat(60 * 1024);
    for (let i = 0; i < 500 && s.server.hub.count('a') > 0; i++) {
      await s.publish('a', big);
      await new Promise((r) => setImmediate(r));
    }
    expect(s.server.hub.count('a')).toBe(0); // unsubscribed when the limit was hit
    c.ws.resume();
    const { code } = await c.closed;
    expect(code).toBe(1013);
    // Everything it did receive is a prefix of the channel, in order: it resumes from there.
    const cursors = c.queue.map((m) => Number(String(m.cursor).split('-')[1]));
    expect(cursors).toEqual(Array.from({ length: cursors.length }, (_, i) => i + 1));
  });
});
