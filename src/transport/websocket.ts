import RWSImport from 'reconnecting-websocket';
import { backoff, probeDelay, restartDelay } from '../backoff.js';
import { reaction, stopCode } from '../close-codes.js';
import type { Ctx } from '../context.js';
import { TidingsError } from '../errors.js';
import { parseFrame } from '../messages.js';
import { watchdog } from '../watchdog.js';

/** Subprotocol offered in the handshake (PROTOCOL.md). */
export const SUBPROTOCOL = 'tidings.v1';

/**
 * The slice of reconnecting-websocket 4.4.0 we use. Its own types do not
 * resolve under NodeNext, and we ship our own d.ts anyway.
 */
interface RWS {
  reconnect(code?: number, reason?: string): void;
  close(code?: number, reason?: string): void;
}
type RWSCtor = new (url: () => Promise<string>, protocols: string, options: object) => RWS;
const RWS = RWSImport as unknown as RWSCtor;

export interface WsTransport {
  /** Switch between live use (full-jitter backoff) and background probing while polling. */
  probe(on: boolean): void;
  /** Drop the socket and reconnect; at once if `now`, else after backoff. */
  drop(now?: boolean): void;
  /** Check the watchdog against the wall clock (wake from sleep). */
  check(): void;
  close(): void;
}

/**
 * WebSocket transport driven through reconnecting-websocket (RWS).
 *
 * RWS owns the retry cycle: after every close it waits its own delay, awaits
 * our URL provider, then constructs a socket. Its delay is `min * factor^n`
 * with the randomness drawn once at module load, so we set its delays to 0
 * and do all waiting in the provider: full-jitter backoff, the 1012 window,
 * the probe schedule, `navigator.onLine`. RWS stalls for good if the provider
 * ever rejects, so the provider catches everything and loops.
 *
 * RWS hides the real close code (after an error or its own timeout it
 * dispatches a synthetic 1000), so we hand it a WebSocket constructor that
 * hooks the real socket first and read codes, messages and errors there.
 * Events from a socket other than the current one are ignored.
 */
/** The current attempt: a socket waiting for `welcome`, or a live one. None while the provider waits. */
type Attempt = { ws: WebSocket; live: false } | { ws: WebSocket; live: true; ping: number; since: number };

export function wsTransport(c: Ctx, probing: boolean): WsTransport {
  const { s, clock, random } = c;
  let cur: Attempt | undefined;
  let n = 0; // backoff exponent: attempts since the last connection that stayed up
  let p = 0; // probe number
  let next: number | undefined = probing ? undefined : 0; // overrides the next delay (first connect: at once)
  let retriedToken = false;
  let token = '';

  const ended = (code: number, reason: string) => {
    const was = cur;
    cur = undefined;
    dog.stop();
    if (!was?.live) c.failed();
    else if (clock.now() - was.since >= s.resetAfter) n = 0;
    switch (reaction(code)) {
      case 'stop':
        return c.fatal(new TidingsError(stopCode(code), reason, code));
      case 'token':
        if (retriedToken) return c.fatal(new TidingsError('TOKEN_REJECTED', reason, code));
        retriedToken = true;
        c.stale();
        next = 0;
        break;
      case 'restart':
        next = restartDelay(reason, random);
    }
    c.down('websocket');
  };

  let wake: (() => void) | undefined;
  let closed = false;
  const drop = (now?: boolean) => {
    // An error handler may have closed the client meanwhile: RWS must not restart.
    if (closed) return;
    if (cur) ended(1006, '');
    if (now) {
      next = 0;
      wake?.(); // cut a backoff wait in progress short
    }
    rws.reconnect(1000);
  };

  // Before welcome: connectTimeout. After: ping + pingGrace (PROTOCOL.md step 4).
  const dog = watchdog(clock, drop);

  function Socket(url: string, protocols: string) {
    let ws: WebSocket;
    try {
      ws = new c.WS!(url, protocols);
      dog.arm(s.connectTimeout);
    } catch {
      // Browsers throw SecurityError for blocked ports or CSP. RWS must get an
      // object back (a throw here would stall it): hand it a closed stand-in
      // and let the watchdog count the failed attempt on the next tick.
      ws = { readyState: 3, addEventListener() {}, removeEventListener() {} } as unknown as WebSocket;
      dog.arm(0);
    }
    cur = { ws, live: false };
    ws.onopen = () => ws === cur?.ws && ws.send(JSON.stringify({ type: 'hello', token, channels: hello() }));
    ws.onerror = () => ws === cur?.ws && ended(1006, '');
    ws.onclose = (e) => ws === cur?.ws && ended(e.code, e.reason);
    ws.onmessage = (e) => {
      if (ws !== cur?.ws) return;
      const m = parseFrame(e.data);
      if (!m) {
        c.error(new TidingsError('PROTOCOL'));
        return drop();
      }
      if (m.type === 'welcome' && !cur.live) {
        cur = { ws, live: true, ping: m.ping, since: clock.now() };
        retriedToken = false;
        p = 0;
        dog.arm(m.ping + s.grace);
        c.deliver(m, 'websocket');
        return c.up('websocket');
      }
      // Any message proves the connection alive (PROTOCOL.md step 4).
      if (cur.live) dog.arm(cur.ping + s.grace);
      if (m.type === 'ping') ws.send('{"type":"pong"}');
      else c.deliver(m, 'websocket');
    };
    return ws;
  }
  Socket.CLOSING = 2; // RWS checks this to accept the constructor

  async function provider(): Promise<string> {
    for (;;) {
      try {
        const d = next ?? (probing ? probeDelay(p++, s.probeFirst, s.probeMax, random) : backoff(n++, s.base, s.cap, random));
        next = undefined;
        await Promise.race([c.sleep(d), new Promise<void>((r) => (wake = r))]);
        await c.online();
        token = await c.token();
        return s.wsUrl;
      } catch (e) {
        // Never reject: RWS 4.4.0 would never call us again.
        c.error(e as TidingsError);
        c.failed();
      }
    }
  }

  const hello = () => {
    const cs = c.cursors.get();
    const out: Record<string, string | null> = {};
    for (const ch of s.channels) out[ch] = cs[ch] ?? null;
    return out;
  };

  // The build's trim-reconnecting-websocket (rollup.config.mjs) relies on these
  // options being all we pass; we never call rws.send() (hello and pong go on
  // the real socket), so there is no queue to configure.
  const rws = new RWS(provider, SUBPROTOCOL, {
    WebSocket: Socket,
    minReconnectionDelay: 0,
    maxReconnectionDelay: 0,
    // Our watchdog times attempts (on the injectable clock); keep RWS's out of the way.
    connectionTimeout: 1e9,
  });

  return {
    probe(on) {
      if (on && !probing) p = 0;
      probing = on;
    },
    drop,
    check: dog.check,
    close() {
      closed = true;
      cur = undefined;
      dog.stop();
      rws.close();
    },
  };
}
