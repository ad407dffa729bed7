// @vitest-environment happy-dom
/**
 * tidings/react (src/react.ts) with React 19 in a DOM (happy-dom): state and
 * channel hooks, cleanup on unmount and on changed arguments, StrictMode's
 * double effects, and server rendering (no client is created there).
 */
import { Component, StrictMode, act, createElement, type ReactElement, type ReactNode } from 'react';
import { createRoot, type Root } from 'react-dom/client';
import { renderToString } from 'react-dom/server';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createClient, type Client, type EventMessage, type ResetMessage, type State, type TidingsError, type TidingsEvents } from '../../src/index.js';
import { useChannel, useConnectionState, useTidingsClient } from '../../src/react.js';

beforeAll(() => {
  (globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;
});

type Handler = (payload: never) => void;

/** A client driven by hand; counts its listeners and logs (un)subscriptions so cleanup is visible. */
function fakeClient(initial: State = 'connecting', channels: string[] = ['a', 'b']) {
  const handlers = new Map<string, Set<Handler>>();
  const client = {
    state: initial,
    transport: null,
    closed: 0,
    subscribed: [...channels],
    log: [] as string[],
    on(type: string, h: Handler) {
      if (!handlers.has(type)) handlers.set(type, new Set());
      handlers.get(type)!.add(h);
      return () => client.off(type, h);
    },
    channels: () => client.subscribed.slice(),
    subscribe(c: string) {
      client.log.push(`+${c}`);
      if (!client.subscribed.includes(c)) client.subscribed.push(c);
    },
    unsubscribe(c: string) {
      client.log.push(`-${c}`);
      client.subscribed = client.subscribed.filter((x) => x !== c);
    },
    off(type: string, h?: Handler) {
      if (h) handlers.get(type)?.delete(h);
      else handlers.delete(type);
    },
    cursors: () => ({}),
    reconnect() {},
    close() {
      this.closed++;
    },
    emit<K extends keyof TidingsEvents>(type: K, payload: TidingsEvents[K]) {
      if (type === 'state') client.state = payload as State;
      for (const h of [...(handlers.get(type) ?? [])]) (h as (p: TidingsEvents[K]) => void)(payload);
    },
    listeners: (type: string) => handlers.get(type)?.size ?? 0,
  };
  return client;
}
type Fake = ReturnType<typeof fakeClient>;
const asClient = (f: Fake) => f as unknown as Client;

let root: Root | null = null;
let container: HTMLElement;

async function render(element: ReactElement, strict = false): Promise<void> {
  if (!root) {
    container = document.createElement('div');
    document.body.appendChild(container);
    root = createRoot(container);
  }
  await act(async () => root!.render(strict ? createElement(StrictMode, null, element) : element));
}

async function unmount(): Promise<void> {
  await act(async () => root?.unmount());
  root = null;
}

afterEach(async () => {
  await unmount();
  document.body.innerHTML = '';
});

function StateView({ client }: { client: Client | null }) {
  return createElement('p', null, String(useConnectionState(client)));
}

function ChannelView(props: { client: Client | null; channel: string; seen: unknown[]; label?: string; resets?: ResetMessage[] }) {
  useChannel(props.client, props.channel, (e: EventMessage) => props.seen.push(`${props.label ?? ''}${String(e.data)}`), (r) => props.resets?.push(r));
  return null;
}

const event = (channel: string, data: unknown): EventMessage => ({ channel, cursor: 'c1', data });

describe('useConnectionState', () => {
  it('renders the state, follows each change, and stops listening on unmount', async () => {
    const f = fakeClient('connecting');
    await render(createElement(StateView, { client: asClient(f) }));
    expect(container.textContent).toBe('connecting');
    await act(async () => f.emit('state', 'open'));
    expect(container.textContent).toBe('open');
    await act(async () => f.emit('state', 'polling'));
    expect(container.textContent).toBe('polling');
    expect(f.listeners('state')).toBe(1);
    await unmount();
    expect(f.listeners('state')).toBe(0);
  });

  it('is null without a client, and moves listeners when the client changes', async () => {
    await render(createElement(StateView, { client: null }));
    expect(container.textContent).toBe('null');
    const a = fakeClient('open');
    const b = fakeClient('offline');
    await render(createElement(StateView, { client: asClient(a) }));
    expect(container.textContent).toBe('open');
    await render(createElement(StateView, { client: asClient(b) }));
    expect(container.textContent).toBe('offline');
    expect([a.listeners('state'), b.listeners('state')]).toEqual([0, 1]);
  });

  it('under StrictMode keeps exactly one listener', async () => {
    const f = fakeClient('open');
    await render(createElement(StateView, { client: asClient(f) }), true);
    expect(f.listeners('state')).toBe(1);
    await act(async () => f.emit('state', 'stopped'));
    expect(container.textContent).toBe('stopped');
  });
});

describe('useChannel', () => {
  it('delivers only its channel, events and resets, and removes both listeners on unmount', async () => {
    const f = fakeClient('open');
    const seen: unknown[] = [];
    const resets: ResetMessage[] = [];
    await render(createElement(ChannelView, { client: asClient(f), channel: 'a', seen, resets }));
    await act(async () => {
      f.emit('event', event('a', 1));
      f.emit('event', event('b', 2));
      f.emit('reset', { channel: 'b', cursor: 'h' });
      f.emit('reset', { channel: 'a', cursor: 'h' });
      f.emit('event', event('a', 3));
    });
    expect(seen).toEqual(['1', '3']);
    expect(resets).toEqual([{ channel: 'a', cursor: 'h' }]);
    await unmount();
    expect([f.listeners('event'), f.listeners('reset')]).toEqual([0, 0]);
    f.emit('event', event('a', 4));
    expect(seen).toEqual(['1', '3']);
  });

  it('calls the latest handler without re-registering on re-render, and re-registers when the channel changes', async () => {
    const f = fakeClient('open');
    const seen: unknown[] = [];
    const on = vi.spyOn(f, 'on');
    await render(createElement(ChannelView, { client: asClient(f), channel: 'a', seen, label: 'first:' }));
    await render(createElement(ChannelView, { client: asClient(f), channel: 'a', seen, label: 'second:' }));
    expect(on).toHaveBeenCalledTimes(2); // event + reset, once
    await act(async () => f.emit('event', event('a', 1)));
    expect(seen).toEqual(['second:1']);
    await render(createElement(ChannelView, { client: asClient(f), channel: 'b', seen, label: 'b:' }));
    expect(f.listeners('event')).toBe(1);
    await act(async () => {
      f.emit('event', event('a', 2));
      f.emit('event', event('b', 3));
    });
    expect(seen).toEqual(['second:1', 'b:3']);
  });

  it('under StrictMode double effects delivers each event once', async () => {
    const f = fakeClient('open');
    const seen: unknown[] = [];
    await render(createElement(ChannelView, { client: asClient(f), channel: 'a', seen }), true);
    expect(f.listeners('event')).toBe(1);
    await act(async () => f.emit('event', event('a', 'x')));
    expect(seen).toEqual(['x']);
  });

  it("leaves the client's own channels subscribed", async () => {
    const f = fakeClient('open', ['a']);
    await render(createElement(ChannelView, { client: asClient(f), channel: 'a', seen: [] }), true);
    await unmount();
    await Promise.resolve();
    expect(f.log).toEqual([]);
    expect(f.subscribed).toEqual(['a']);
  });

  it('subscribes a channel the client lacks while any hook uses it, once under StrictMode, and unsubscribes after the last unmount', async () => {
    const f = fakeClient('open', ['a']);
    const seen: unknown[] = [];
    const two = (n: number) =>
      createElement('div', null, ...Array.from({ length: n }, (_, i) => createElement(ChannelView, { key: i, client: asClient(f), channel: 'news', seen, label: `${i}:` })));
    await render(two(2), true);
    expect(f.log).toEqual(['+news']);
    await act(async () => f.emit('event', event('news', 'x')));
    expect(seen).toEqual(['0:x', '1:x']);
    await render(two(1), true);
    expect(f.log).toEqual(['+news']);
    await render(two(0), true);
    expect(f.log).toEqual(['+news', '-news']);
    expect(f.subscribed).toEqual(['a']);
  });

  it('moves the subscription when the channel changes', async () => {
    const f = fakeClient('open', []);
    await render(createElement(ChannelView, { client: asClient(f), channel: 'x', seen: [] }));
    await render(createElement(ChannelView, { client: asClient(f), channel: 'y', seen: [] }));
    expect(f.log).toEqual(['+x', '+y', '-x']);
    expect(f.subscribed).toEqual(['y']);
  });
});

describe('useTidingsClient', () => {
  function Owner(props: { create: () => Client; deps?: unknown[] }) {
    const client = useTidingsClient(props.create, props.deps);
    return createElement('p', null, String(useConnectionState(client)));
  }

  it('creates the client after mount, once under StrictMode, and closes it on unmount', async () => {
    const made: Fake[] = [];
    const create = vi.fn(() => {
      const f = fakeClient('open');
      made.push(f);
      return asClient(f);
    });
    await render(createElement(Owner, { create }), true);
    expect(create).toHaveBeenCalledTimes(1);
    expect(container.textContent).toBe('open');
    expect(made[0]!.closed).toBe(0);
    await unmount();
    expect(made[0]!.closed).toBe(1);
  });

  it('closes the old client and creates a new one when deps change, not on re-render', async () => {
    const made: Fake[] = [];
    const create = () => {
      const f = fakeClient('open');
      made.push(f);
      return asClient(f);
    };
    await render(createElement(Owner, { create, deps: ['user:1'] }));
    await render(createElement(Owner, { create: () => create(), deps: ['user:1'] }));
    expect(made.length).toBe(1);
    await render(createElement(Owner, { create, deps: ['user:2'] }));
    expect(made.length).toBe(2);
    expect(made.map((f) => f.closed)).toEqual([1, 0]);
    expect(made[1]!.listeners('state')).toBe(1);
    expect(made[0]!.listeners('state')).toBe(0);
  });

  it("a create() that throws reaches the component's error boundary", async () => {
    class Boundary extends Component<{ children: ReactNode }, { error: unknown }> {
      override state = { error: null as unknown };
      static getDerivedStateFromError(error: unknown) {
        return { error };
      }
      override render() {
        return this.state.error ? createElement('p', null, `caught ${(this.state.error as TidingsError).code}`) : this.props.children;
      }
    }
    const quiet = vi.spyOn(console, 'error').mockImplementation(() => {});
    try {
      const create = () => createClient({ url: 'http://127.0.0.1:9', token: 'tok', channels: ['no spaces allowed'] });
      await render(createElement(Boundary, null, createElement(Owner, { create })));
      expect(container.textContent).toBe('caught BAD_OPTIONS');
    } finally {
      quiet.mockRestore();
    }
  });

  it('with the real client under StrictMode opens one WebSocket, and unmount stops it', async () => {
    const sockets: { url: string; closed: boolean }[] = [];
    class CountingSocket extends EventTarget {
      static readonly CONNECTING = 0;
      static readonly OPEN = 1;
      static readonly CLOSING = 2;
      static readonly CLOSED = 3;
      readyState = 0;
      protocol = '';
      record: { url: string; closed: boolean };
      constructor(url: string) {
        super();
        this.record = { url, closed: false };
        sockets.push(this.record);
      }
      send() {}
      close() {
        this.record.closed = true;
        this.readyState = 3;
      }
    }
    let client: Client | null = null;
    const create = () => (client = createClient({ url: 'http://127.0.0.1:9', token: 'tok', channels: ['a'], WebSocket: CountingSocket as unknown as typeof WebSocket }));
    await render(createElement(Owner, { create }), true);
    await act(async () => new Promise((r) => setTimeout(r, 20)));
    expect(sockets.length).toBe(1);
    expect(container.textContent).toBe('connecting');
    await unmount();
    expect(client!.state).toBe('stopped');
    expect(sockets.every((s) => s.closed)).toBe(true);
  });
});

describe('server rendering', () => {
  it('creates no client and renders a null state', () => {
    const create = vi.fn(() => asClient(fakeClient('open')));
    const html = renderToString(createElement(Owner2, { create }));
    expect(html).toBe('<p>null</p>');
    expect(create).not.toHaveBeenCalled();
  });
  function Owner2({ create }: { create: () => Client }) {
    const client = useTidingsClient(create);
    useChannel(client, 'a', () => {});
    return createElement('p', null, String(useConnectionState(client)));
  }
});
