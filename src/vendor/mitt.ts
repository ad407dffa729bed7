/*!
 * mitt 3.0.1, vendored (https://github.com/developit/mitt, MIT, Jason Miller).
 * Why vendored: its typings do not resolve under TypeScript NodeNext, and
 * upstream calls handlers in a plain loop, so one throwing handler loses the
 * event for every handler after it. Here each handler is called on its own
 * and a throw is reported (reportError, else console.error), never rethrown
 * into the emitter's caller. The '*' wildcard and `all` are left out: unused.
 */
export type Handler<T> = (event: T) => void;

export interface Emitter<E> {
  on<K extends keyof E>(type: K, handler: Handler<E[K]>): void;
  off<K extends keyof E>(type: K, handler?: Handler<E[K]>): void;
  emit<K extends keyof E>(type: K, event: E[K]): void;
}

/** A throw in an application handler: shown like any uncaught error, but it stops nothing. */
export const report = (e: unknown) => {
  const r = (globalThis as { reportError?: (e: unknown) => void }).reportError;
  r ? r(e) : console.error(e);
};

export default function mitt<E>(): Emitter<E> {
  const all = new Map<keyof E, Handler<never>[]>();
  return {
    on(type, handler) {
      const hs = all.get(type);
      hs ? hs.push(handler) : all.set(type, [handler]);
    },
    off(type, handler) {
      const hs = all.get(type);
      if (hs) handler ? hs.splice(hs.indexOf(handler) >>> 0, 1) : all.set(type, []);
    },
    emit(type, event) {
      for (const h of (all.get(type) ?? []).slice())
        try {
          (h as Handler<E[typeof type]>)(event);
        } catch (e) {
          report(e);
        }
    },
  };
}
