import { describe, expect, it } from 'vitest';
import { useFake } from './helpers.js';

const { fake, client } = useFake();

describe('smoke', () => {
  it('connects over websocket and delivers a published event', async () => {
    const h = client();
    await h.tick();
    expect(h.c.state).toBe('open');
    expect(h.c.transport).toBe('websocket');
    fake.publish('a', { n: 1 });
    await h.tick();
    expect(h.events).toEqual([{ channel: 'a', cursor: 'a-1', data: { n: 1 } }]);
    expect(fake.log.hellos[0]).toEqual({ type: 'hello', token: 'tok', channels: { a: null, b: null } });
  });
});
