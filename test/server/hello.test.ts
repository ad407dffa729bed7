// The hello parser and the welcome builder: pure functions, table tests.
import { describe, expect, it } from 'vitest';
import { messageType, parseHello, parseJson, welcomeMessage } from '../../server/ws/hello.js';

const text = (s: string) => Buffer.from(s, 'utf8');

describe('parseJson / messageType', () => {
  it('parses text frames only', () => {
    expect(parseJson(text('{"type":"pong"}'), true)).toEqual({ type: 'pong' });
    expect(parseJson(text('{"type":"pong"}'), false)).toBeUndefined();
    expect(parseJson(text('{nope'), true)).toBeUndefined();
  });
  it.each([
    [{ type: 'pong' }, 'pong'],
    [{ type: 5 }, null],
    [[{ type: 'pong' }], null],
    [null, null],
    ['pong', null],
  ])('messageType(%j) is %j', (msg, type) => {
    expect(messageType(msg)).toBe(type);
  });
});

describe('parseHello', () => {
  it('returns names and cursors in order, keeping malformed cursor strings for a reset', () => {
    expect(parseHello({ type: 'hello', token: 't', channels: { 'user:42': 'e-3', news: null, odd: '!!' } }, 64)).toEqual({
      ok: true, token: 't', names: ['user:42', 'news', 'odd'], cursors: ['e-3', null, '!!'],
    });
  });
  it('passes a missing token through (the connection answers 4401, not 4400)', () => {
    expect(parseHello({ type: 'hello', channels: { a: null } }, 64)).toMatchObject({ ok: true, token: undefined });
  });
  it('accepts exactly maxChannels channels and refuses one more', () => {
    const ch = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`c${i}`, null]));
    expect(parseHello({ type: 'hello', token: 't', channels: ch(3) }, 3).ok).toBe(true);
    expect(parseHello({ type: 'hello', token: 't', channels: ch(4) }, 3)).toEqual({ ok: false, reason: 'bad hello: more than 3 channels' });
  });
  it.each([
    [undefined, 'bad hello: not a JSON object with a type'],
    [{ type: 'subscribe' }, 'bad hello: expected type hello'],
    [{ type: 'hello', channels: null }, 'bad hello: channels must be an object'],
    [{ type: 'hello', channels: ['a'] }, 'bad hello: channels must be an object'],
    [{ type: 'hello', channels: {} }, 'bad hello: no channels'],
    [{ type: 'hello', channels: { 'a b': null } }, 'bad hello: bad channel name'],
    [{ type: 'hello', channels: { ['x'.repeat(129)]: null } }, 'bad hello: bad channel name'],
    [{ type: 'hello', channels: { a: 1 } }, 'bad hello: cursor must be a string or null'],
  ])('refuses %j: %s', (msg, reason) => {
    expect(parseHello(msg, 64)).toEqual({ ok: false, reason });
  });
});

describe('welcomeMessage', () => {
  it('is valid JSON with the ping interval and each head, in the hello order', () => {
    const s = welcomeMessage(25000, ['user:42', 'news'], ['e-17', 'e-0']);
    expect(JSON.parse(s)).toEqual({ type: 'welcome', ping: 25000, channels: { 'user:42': 'e-17', news: 'e-0' } });
    expect(s.indexOf('user:42')).toBeLessThan(s.indexOf('news'));
  });
});
