/**
 * Compile-time tests of the public surface, checked by
 * `tsc -p tsconfig.json --noEmit`: each `@ts-expect-error` marks a misuse
 * that must stay an error (tsc fails if it stops being one). vitest also
 * runs the file; misuses sit in functions that are never called.
 */
import { describe, expectTypeOf, it } from 'vitest';
import { createClient, TidingsError, type Client, type ErrorCode, type State, type Transport } from '../../src/index.js';

describe('public types', () => {
  it('types each event payload', () => {
    const c: Client = createClient({ url: 'http://x.test', token: 't', channels: ['a'], transport: 'polling', fetch: async () => new Response(null, { status: 304 }) });
    c.on('event', (e) => {
      expectTypeOf(e).toEqualTypeOf<{ channel: string; cursor: string; data: unknown; first: boolean }>();
    });
    c.on('reset', (e) => {
      expectTypeOf(e.cursor).toBeString();
      // @ts-expect-error a reset carries no data
      void e.data;
    });
    c.on('state', (s) => expectTypeOf(s).toEqualTypeOf<'connecting' | 'open' | 'polling' | 'offline' | 'stopped'>());
    c.on('error', (e) => {
      expectTypeOf(e).toEqualTypeOf<TidingsError>();
      expectTypeOf(e.code).toEqualTypeOf<ErrorCode>();
      expectTypeOf(e.closeCode).toEqualTypeOf<number | undefined>();
      expectTypeOf(e.status).toEqualTypeOf<number | undefined>();
    });
    c.on('offline', () => {});
    expectTypeOf(c.leader).toBeBoolean();
    void (() => {
      // @ts-expect-error unknown event name
      c.on('message', () => {});
      // @ts-expect-error wrong payload type for 'state'
      c.on('state', (s: number) => void s);
    });
    expectTypeOf(c.state).toEqualTypeOf<State>();
    expectTypeOf(c.transport).toEqualTypeOf<Transport | null>();
    expectTypeOf(c.cursors()).toEqualTypeOf<Record<string, string>>();
    void (() => {
      // @ts-expect-error state is read-only
      c.state = 'open';
    });
    c.close();
  });

  it('rejects misused options', () => {
    const fetch = async () => new Response(null, { status: 304 });
    // @ts-expect-error channels is required
    void (() => createClient({ url: 'http://x', token: 't' }));
    // @ts-expect-error unknown transport
    void (() => createClient({ url: 'http://x', token: 't', channels: ['a'], transport: 'sse' }));
    // @ts-expect-error token must be a string or a function returning one
    void (() => createClient({ url: 'http://x', token: 42, channels: ['a'] }));
    createClient({ url: 'http://x', token: async () => 't', channels: ['a'], transport: 'polling', fetch, backoff: { base: 10 }, probe: { first: 1 } }).close();
  });

  it('types data with the generic parameter, channels as a record, and the new methods', () => {
    type Mail = { folder: string; unread: number };
    const fetch = async () => new Response(null, { status: 304 });
    const c = createClient<Mail>({ url: 'http://x.test', token: 't', channels: { 'user:42': null, news: 'c-1' }, transport: 'polling', fetch });
    const off = c.on('event', (e) => {
      expectTypeOf(e.data).toEqualTypeOf<Mail>();
      expectTypeOf(e.data.unread).toBeNumber();
    });
    expectTypeOf(off).toEqualTypeOf<() => void>();
    expectTypeOf(c.ready).returns.toEqualTypeOf<Promise<void>>();
    c.on('disconnect', (d) => {
      expectTypeOf(d.transport).toEqualTypeOf<Transport>();
      expectTypeOf(d.retryIn).toBeNumber();
      expectTypeOf(d.code).toEqualTypeOf<number | undefined>();
    });
    c.subscribe('other');
    c.subscribe('other', 'c-2');
    c.unsubscribe('other');
    expectTypeOf(c.channels()).toEqualTypeOf<string[]>();
    void (() => {
      // @ts-expect-error a starting cursor is a string or null
      createClient({ url: 'http://x', token: 't', channels: { a: 1 } });
    });
    off();
    c.close();
  });
});
