/**
 * `tidings/react`: React bindings for the Tidings client.
 *
 * - `useTidingsClient(create, deps)` owns a client: created after mount (never
 *   during server rendering, never twice under StrictMode), closed on unmount.
 * - `useConnectionState(client)` renders the connection state.
 * - `useChannel(client, channel, onEvent, onReset?)` runs a handler for one
 *   channel's events, subscribing the channel while it is used.
 *
 * The hooks take the client as an argument (or `null` while there is none), so
 * an app decides where it lives: one per page in a context, or one per widget.
 * React is a peer dependency; nothing here reaches the SDK's internals.
 */
import { useEffect, useMemo, useRef, useState, useSyncExternalStore } from 'react';
import type { Client, EventMessage, ResetMessage, State } from './index.js';

/** A client of any event type: the hooks only pass payloads through. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyClient = Client<any>;

/**
 * Channels that `useChannel` subscribed on a client, with how many mounted
 * hooks use each: the last one to unmount unsubscribes. A channel the client
 * already had (its `channels` option, or the app's own `subscribe()`) is never
 * unsubscribed by a hook.
 *
 * The unsubscribe waits for a microtask and is skipped if a hook took the
 * channel again by then: StrictMode's unmount-and-mount, or a component
 * replaced by another on the same channel, does not drop and re-subscribe it.
 */
const borrowed = new WeakMap<AnyClient, Map<string, number>>();

function acquire(client: AnyClient, channel: string): void {
  let uses = borrowed.get(client);
  if (!uses) borrowed.set(client, (uses = new Map()));
  const n = uses.get(channel);
  if (n !== undefined) uses.set(channel, n + 1);
  else if (!client.channels().includes(channel)) {
    uses.set(channel, 1);
    client.subscribe(channel);
  }
}

function release(client: AnyClient, channel: string): void {
  const uses = borrowed.get(client);
  const n = uses?.get(channel);
  if (uses === undefined || n === undefined) return;
  uses.set(channel, n - 1);
  if (n > 1) return;
  queueMicrotask(() => {
    if (uses.get(channel) !== 0) return;
    uses.delete(channel);
    client.unsubscribe(channel);
  });
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
 * recreate the client on each render; list what it depends on in `deps`. If
 * it throws, the error is thrown from the component's next render, so the
 * nearest error boundary shows it.
 */
export function useTidingsClient<T = unknown>(create: () => Client<T>, deps: readonly unknown[] = []): Client<T> | null {
  const [client, setClient] = useState<Client<T> | null>(null);
  const [failure, setFailure] = useState<{ error: unknown } | null>(null);
  const latest = useRef(create);
  // Declared first, so it runs before the creating effect of the same commit.
  useEffect(() => {
    latest.current = create;
  });
  useEffect(() => {
    let cancelled = false;
    let created: Client<T> | null = null;
    queueMicrotask(() => {
      if (cancelled) return;
      try {
        created = latest.current();
      } catch (error) {
        setFailure({ error });
        return;
      }
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
  // A throwing create() (TidingsError BAD_OPTIONS, say) reaches the nearest
  // error boundary, as an error in render would, not the global error handler.
  if (failure) throw failure.error;
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
export function useConnectionState(client: AnyClient | null | undefined): State | null {
  // One subscribe function per client, so React resubscribes only when the client changes.
  const subscribe = useMemo(() => (client ? (notify: () => void) => client.on('state', notify) : noSubscription), [client]);
  return useSyncExternalStore(subscribe, client ? () => client.state : noState, noState);
}

/**
 * Runs `onEvent` for each event on `channel` (and `onReset` when its history
 * has a gap: reload that channel's data out of band), from mount to unmount.
 * The handlers may be inline functions: the latest ones are called, and a new
 * function does not re-register anything.
 *
 * A channel the client does not have yet is subscribed (from now on, or after
 * its persisted cursor) while at least one mounted `useChannel` uses it, and
 * unsubscribed after the last one unmounts; other channels lose nothing.
 *
 * Listening starts in an effect, so never during server rendering, and the
 * listeners are removed on unmount and when `client` or `channel` changes; under
 * StrictMode's double effects the first registration is removed before the
 * second is added, so each event reaches a handler once.
 */
export function useChannel<T = unknown>(
  client: AnyClient | null | undefined,
  channel: string,
  onEvent: (event: EventMessage<T>) => void,
  onReset?: (reset: ResetMessage) => void,
): void {
  const handlers = useRef({ onEvent, onReset });
  useEffect(() => {
    handlers.current = { onEvent, onReset };
  });
  useEffect(() => {
    if (!client) return;
    const offEvent = client.on('event', (e: EventMessage) => {
      if (e.channel === channel) handlers.current.onEvent(e as EventMessage<T>);
    });
    const offReset = client.on('reset', (r: ResetMessage) => {
      if (r.channel === channel) handlers.current.onReset?.(r);
    });
    acquire(client, channel);
    return () => {
      offEvent();
      offReset();
      release(client, channel);
    };
  }, [client, channel]);
}
