import { describe, expect, it } from 'vitest';
import { parseFrame } from '../../src/messages.js';

describe('parseFrame', () => {
  it('accepts the PROTOCOL.md messages', () => {
    expect(parseFrame('{"type":"event","channel":"user:42","cursor":"lqz3k1-17","data":{"unread":3}}')).toMatchObject({ type: 'event', cursor: 'lqz3k1-17' });
    expect(parseFrame('{"type":"reset","channel":"user:42","cursor":"lqz9x0-0"}')).toMatchObject({ type: 'reset' });
    expect(parseFrame('{"type":"welcome","ping":25000,"channels":{"a":"x-1"}}')).toMatchObject({ type: 'welcome', ping: 25000 });
    expect(parseFrame('{"type":"ping"}')).toEqual({ type: 'ping' });
  });

  it('maps an unknown type to other (ignored, forward compatible)', () => {
    expect(parseFrame('{"type":"future"}')).toEqual({ type: 'other' });
  });

  it.each([
    ['not JSON', '{'],
    ['binary', new ArrayBuffer(2)],
    ['no type', '{}'],
    ['a JSON string', '"event"'],
    ['event without cursor', '{"type":"event","channel":"a","data":1}'],
    ['cursor with a bad character', '{"type":"event","channel":"a","cursor":"a b","data":1}'],
    ['cursor of 65 characters', JSON.stringify({ type: 'event', channel: 'a', cursor: 'x'.repeat(65), data: 1 })],
    ['welcome without ping', '{"type":"welcome","channels":{}}'],
  ])('rejects %s', (_, data) => {
    expect(parseFrame(data)).toBeUndefined();
  });

  it('accepts a cursor of exactly 64 characters', () => {
    expect(parseFrame(JSON.stringify({ type: 'event', channel: 'a', cursor: 'x'.repeat(64), data: 1 }))).toBeDefined();
  });
});
