/*!
 * Reconnecting WebSocket 4.4.0, vendored and reduced to what Tidings uses
 * by Pedro Ladaria <pedro.ladaria@gmail.com>
 * https://github.com/pladaria/reconnecting-websocket
 * License MIT
 */
/**
 * Reviewed copy of upstream's reconnect cycle (close → wait → URL provider →
 * new socket), pinned at 4.4.0, which is unmaintained. Kept: the cycle,
 * `reconnect()`, `close()`, `send()`, the `on*` handlers. Left out (unused
 * by src/engine.ts): the message queue, event listener lists, accessors,
 * `debug`, `maxRetries`, `minUptime`, `connectionTimeout` (our watchdog times
 * attempts up to `welcome`, on the injected clock), and string URLs.
 *
 * Fixed against upstream, each covered by test/sdk/vendor-rws.test.ts:
 * 1. A URL provider that rejects stalled upstream for good (its promise chain
 *    had no rejection handler and kept the connect lock). Here it is reported
 *    through `onerror` and the cycle goes on after the next delay.
 * 2. A constructor that throws (CSP, blocked port) likewise: reported, retried.
 * 3. Per-attempt delay: upstream's is `min · factor^n` with its randomness
 *    drawn once at module load (every page of a fleet retries in lockstep).
 *    `delay(n)` is asked before each attempt; the caller jitters it.
 * 4. `onclose` runs before the next attempt is scheduled, so `delay()` can
 *    depend on why the socket closed (upstream asked for the delay first).
 * 5. `reconnect()` during a wait cuts the wait short (upstream ignored it),
 *    and `close()` releases the connect lock.
 * 6. Timers come from `options` (an injectable clock), and the socket from
 *    `create()`, a factory instead of a constructor.
 * 7. `onclose` gets the real close code; upstream replaced it by a synthetic
 *    1000 after an error.
 */
export interface CloseInfo {
  code: number;
  reason: string;
}

export interface Options {
  /** Makes the socket (upstream: a `WebSocket` constructor option). */
  create(url: string, protocols: string): WebSocket;
  /** Delay before attempt n (0 = the first after construction or reconnect()), ms. */
  delay(n: number): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
}

export default class ReconnectingWebSocket {
  onopen: (() => void) | null = null;
  onmessage: ((e: MessageEvent) => void) | null = null;
  onclose: ((e: CloseInfo) => void) | null = null;
  onerror: ((e: unknown) => void) | null = null;
  private _ws: WebSocket | undefined;
  private _retryCount = -1;
  private _shouldReconnect = true;
  private _connectLock = false;
  private _wake: (() => void) | undefined;

  constructor(
    private _url: () => string | Promise<string>,
    private _protocols: string,
    private _options: Options,
  ) {
    this._connect();
  }

  /** Close the socket (no onclose) and stop reconnecting. */
  close(code = 1000, reason?: string) {
    this._shouldReconnect = false;
    this._wake?.();
    this._drop(code, reason);
  }

  /** Close the socket (onclose with `code`) and connect again; cuts a wait short. */
  reconnect(code = 1000, reason = '') {
    this._shouldReconnect = true;
    this._retryCount = -1;
    if (this._drop(code, reason)) this.onclose?.({ code, reason });
    this._wake ? this._wake() : this._connect();
  }

  send(data: string) {
    if (this._ws?.readyState === 1) this._ws.send(data);
  }

  private _drop(code: number, reason?: string): boolean {
    const ws = this._ws;
    this._ws = undefined;
    if (!ws) return false;
    ws.onopen = ws.onmessage = ws.onclose = null;
    try {
      ws.close(code, reason);
    } catch {
      /* already closing */
    }
    return true;
  }

  private _connect() {
    if (this._connectLock || !this._shouldReconnect) return;
    this._connectLock = true;
    const o = this._options;
    const n = ++this._retryCount;
    new Promise<void>((resolve) => {
      const t = o.setTimeout(resolve, o.delay(n));
      this._wake = () => (o.clearTimeout(t), resolve());
    })
      .then(() => {
        this._wake = undefined;
        return this._shouldReconnect ? this._url() : undefined;
      })
      .then((url) => {
        if (url === undefined || !this._shouldReconnect) return void (this._connectLock = false);
        const ws = (this._ws = o.create(url, this._protocols));
        this._connectLock = false;
        ws.onopen = () => this.onopen?.();
        ws.onmessage = (e) => this.onmessage?.(e);
        ws.onclose = (e) => {
          this._ws = undefined;
          this.onclose?.({ code: e.code, reason: e.reason });
          this._connect();
        };
      })
      .catch((e) => {
        this._connectLock = false;
        this._ws = undefined;
        this.onerror?.(e);
        this._connect();
      });
  }
}
