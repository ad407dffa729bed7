/**
 * `tidings/react`: React bindings for the Tidings client.
 *
 * - `useTidingsClient(create, deps)` owns a client: created after mount (never
 *   during server rendering, never twice under StrictMode), closed on unmount.
 * - `useConnectionState(client)` renders the connection state.
 * - `useChannel(client, channel, onEvent, onReset?)` runs a handler for one
 *   channel's events.
 *
 * The hooks take the client as an argument (or `null` while there is none), so
 * an app decides where it lives: one per page in a context, or one per widget.
 * React is a peer dependency; nothing here reaches the SDK's internals.
 */
import { useEffect, useMemo, useRef, useState, useSyncExternalStore } from 'react';
import type { Client, EventMessage, ResetMessage, State, TidingsEvents } from './index.js';

/**
 * Adds a client listener and returns its removal. `on()` may return the
 * removal itself; `off(type, handler)` is the fallback for clients whose `on()`
 * returns nothing.
 */
function listen<K extends keyof TidingsEvents>(client: Client, type: K, handler: (payload: TidingsEvents[K]) => void): () => void {
  const off: unknown = client.on(type, handler);
  return typeof off === 'function' ? (off as () => void) : () => client.off(type, handler);
}

/**
 * A client owned by the calling component: `create()` runs after the component
 * mounts, and the client is closed when it unmounts or when a value in `deps`
 * changes (then `create()` runs again). Returns `null` until then, and always
 * during server rendering, where no connection must be opened.
 *
 * Creation waits for a microtask: React 19 StrictMode mounts, unmounts and
 * mounts again synchronously in development, and a client created by the first
 * mount would open a connection only to drop it at once. The discarded mount is
 * cancelled before it creates anything, so StrictMode costs no connection.
 *
 * `create` is read when the client is created, so an inline function does not
 * recreate the client on each render; list what it depends on in `deps`.
 */
export function useTidingsClient(create: () => Client, deps: readonly unknown[] = []): Client | null {
  const [client, setClient] = useState<Client | null>(null);
  const latest = useRef(create);
  latest.current = create;
  useEffect(() => {
    let cancelled = false;
    let created: Client | null = null;
    queueMicrotask(() => {
      if (cancelled) return;
      created = latest.current();
      setClient(created);
    });
    return () => {
      cancelled = true;
      created?.close();
      setClient((current) => (current === created ? null : current));
    };
    // The caller's deps decide when to recreate, as with useEffect.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, deps);
  return client;
}

const noSubscription = () => () => {};
const noState = () => null;

/**
 * The client's connection state (`'connecting' | 'open' | 'polling' |
 * 'offline' | 'stopped'`), re-rendering on each change; `null` while `client`
 * is `null` and during server rendering (the server has no connection to
 * report, and hydration then moves to the client's state).
 */
export function useConnectionState(client: Client | null | undefined): State | null {
  // One subscribe function per client, so React resubscribes only when the client changes.
  const subscribe = useMemo(() => (client ? (notify: () => void) => listen(client, 'state', notify) : noSubscription), [client]);
  return useSyncExternalStore(subscribe, client ? () => client.state : noState, noState);
}

/**
 * Runs `onEvent` for each event on `channel` (and `onReset` when its history
 * has a gap: reload that channel's data out of band), from mount to unmount.
 * The handlers may be inline functions: the latest ones are called, and a new
 * function does not re-register anything. The channel must be one the client
 * subscribes to (its `channels` option).
 *
 * Listening starts in an effect, so never during server rendering, and the
 * listeners are removed on unmount and when `client` or `channel` changes; under
 * StrictMode's double effects the first registration is removed before the
 * second is added, so each event reaches a handler once.
 */
export function useChannel<T = unknown>(
  client: Client | null | undefined,
  channel: string,
  onEvent: (event: EventMessage & { data: T }) => void,
  onReset?: (reset: ResetMessage) => void,
): void {
  const handlers = useRef({ onEvent, onReset });
  useEffect(() => {
    handlers.current = { onEvent, onReset };
  });
  useEffect(() => {
    if (!client) return;
    const offEvent = listen(client, 'event', (e) => {
      if (e.channel === channel) handlers.current.onEvent(e as EventMessage & { data: T });
    });
    const offReset = listen(client, 'reset', (r) => {
      if (r.channel === channel) handlers.current.onReset?.(r);
    });
    return () => {
      offEvent();
      offReset();
    };
  }, [client, channel]);
}
