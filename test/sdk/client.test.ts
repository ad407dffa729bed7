import { describe, expect, it } from 'vitest';
import { createClient, TidingsError, type ClientOptions } from '../../src/index.js';
import { useFake } from './helpers.js';

const { fake, client } = useFake();
const CHANNELS = 'BAD_OPTIONS: channels must be a non-empty list of distinct names matching [A-Za-z0-9:_.-]{1,128}, or an object of them to a cursor or null';
const base: ClientOptions = { url: 'https://mail.example.com', token: 't', channels: ['user:42'], transport: 'polling', fetch: async () => new Response(null, { status: 304 }) };

function thrown(o: Partial<ClientOptions>): unknown {
  try {
    createClient({ ...base, ...o } as ClientOptions).close();
  } catch (e) {
    return e;
  }
}

describe('createClient options', () => {
  it.each([
    ['a url that does not parse', { url: 'not a url' }, 'BAD_OPTIONS: url must be an absolute http(s):// or ws(s):// URL'],
    ['a url with another scheme', { url: 'ftp://x' }, 'BAD_OPTIONS: url must be an absolute http(s):// or ws(s):// URL'],
    ['no channels', { channels: [] }, CHANNELS],
    ['a channel name with a space', { channels: ['user 42'] }, CHANNELS],
    ['a channel name of 129 characters', { channels: ['c'.repeat(129)] }, CHANNELS],
    ['a duplicate channel', { channels: ['a', 'a'] }, CHANNELS],
    ['an empty channel object', { channels: {} }, CHANNELS],
    ['a malformed starting cursor', { channels: { a: 'bad cursor' } }, CHANNELS],
    ['a starting cursor that is not a string', { channels: { a: 5 as unknown as string } }, CHANNELS],
    ['a token that is neither string nor function', { token: 42 as unknown as string }, 'BAD_OPTIONS: token must be a string or a function returning one'],
  ])('throws TidingsError BAD_OPTIONS for %s', (_, o, message) => {
    const e = thrown(o);
    expect(e).toBeInstanceOf(TidingsError);
    expect((e as TidingsError).code).toBe('BAD_OPTIONS');
    expect((e as TidingsError).message).toBe(message);
  });

  it('accepts a channel name of exactly 128 characters', () => {
    expect(thrown({ channels: ['c'.repeat(128)] })).toBeUndefined();
  });

  it.each([
    ['http://tidings.test', 'ws://tidings.test/v1/ws'],
    ['http://tidings.test/', 'ws://tidings.test/v1/ws'],
    ['ws://tidings.test', 'ws://tidings.test/v1/ws'],
  ])('derives the WebSocket URL from %s', async (url, ws) => {
    const seen: string[] = [];
    class Spy extends WebSocket {
      constructor(u: string | URL, p?: string | string[]) {
        super(u, p);
        seen.push(String(u));
      }
    }
    const h = client({ url, WebSocket: Spy });
    await h.tick();
    expect(seen).toEqual([ws]);
    expect(h.c.state).toBe('open');
  });

  it('offers the tidings.v1 subprotocol', async () => {
    let protocols: unknown;
    class Spy extends WebSocket {
      constructor(u: string | URL, p?: string | string[]) {
        super(u, p);
        protocols = p;
      }
    }
    const h = client({ WebSocket: Spy });
    await h.tick();
    expect(protocols).toBe('tidings.v1');
  });

  it('keeps a path prefix of the base URL for polling', async () => {
    const urls: string[] = [];
    const h = client({
      url: 'https://mail.example.com/push/',
      transport: 'polling',
      fetch: async (u) => (urls.push(String(u)), new Response(null, { status: 304 })),
    });
    await h.tick();
    expect(urls[0]).toBe('https://mail.example.com/push/v1/poll?channels=a,b');
  });

  it('ignores a malformed persisted cursor (no BAD_REQUEST on every reload) and keeps the valid ones', async () => {
    sessionStorage.setItem('tidings:cursor:http://tidings.test:a', 'not a cursor!');
    sessionStorage.setItem('tidings:cursor:http://tidings.test:b', 'a-0');
    fake.publish('b', 1);
    const h = client({ persist: true });
    await h.tick();
    expect(h.c.state).toBe('open');
    expect(fake.log.hellos[0]!.channels).toEqual({ a: null, b: 'a-0' });
    expect(h.events.map((e) => e.data)).toEqual([1]);
    expect(sessionStorage.getItem('tidings:cursor:http://tidings.test:a')).toBe('a-0');
    expect(sessionStorage.getItem('tidings:cursor:http://tidings.test:b')).toBe('a-1');
    expect(h.errors).toEqual([]);
  });

  it('off() removes a handler', async () => {
    const h = client();
    const got: unknown[] = [];
    const f = (e: unknown) => got.push(e);
    h.c.on('event', f);
    h.c.off('event', f);
    await h.tick();
    fake.publish('a', 1);
    await h.tick();
    expect(got).toEqual([]);
    expect(h.events).toHaveLength(1);
  });

  it('delivers nothing after close()', async () => {
    const h = client();
    await h.tick();
    h.c.close();
    fake.publish('a', 1);
    await h.tick();
    expect(h.events).toEqual([]);
    expect(h.states).toEqual(['open', 'stopped']);
  });
});
