/**
 * A protocol-level fake Tidings server on msw (PROTOCOL.md): `ws.link` for
 * GET /v1/ws and an `http` handler for GET /v1/poll that honours
 * If-None-Match and `Prefer: wait`. A tiny event store with per-channel
 * cursors `<epoch>-<n>` and a bounded history backs both, so the SDK sees
 * the same events whichever transport it uses. Knobs change behaviour per
 * test; `log` records what the client sent.
 *
 * No real timers: a held long-poll ends on publish(), release() or abort.
 */
import { http, HttpResponse, ws } from 'msw';

type Msg = { type: 'event'; channel: string; cursor: string; data: unknown } | { type: 'reset'; channel: string; cursor: string };
type Hello = { type: 'hello'; token: string; channels: Record<string, string | null> };
type WsClient = { send(data: string): void; close(code?: number, reason?: string): void };

export interface Knobs {
  /** `ping` announced in welcome, ms. */
  ping: number;
  /** Events kept per channel; older cursors get a reset. */
  history: number;
  /** Tokens the server accepts. */
  accept: (token: string) => boolean;
  /** Channels the token grants (all when undefined). */
  granted?: string[];
  /** 'refuse': every WebSocket closes 1006 before open; 'mute': open but never answers hello. */
  ws: 'ok' | 'refuse' | 'mute';
  /** Close codes to answer the next hellos with, one per hello: [code, reason]. */
  closeOnHello: [number, string][];
  /** Forced answers for the next polls, one per poll ('network' = fetch fails). */
  pollQueue: ({ status: number; headers?: Record<string, string>; body?: string } | 'network')[];
  /** X-Poll-Interval, seconds. */
  pollInterval: number;
  /** Honour Prefer: wait (hold the request). */
  longPoll: boolean;
}

const defaults = (): Knobs => ({
  ping: 25_000,
  history: 1000,
  accept: (t) => t.length > 0,
  ws: 'ok',
  closeOnHello: [],
  pollQueue: [],
  pollInterval: 1,
  longPoll: true,
});

export function fakeTidings(base = 'http://tidings.test') {
  let epoch = 'a';
  const store = new Map<string, { n: number; events: { n: number; data: unknown }[] }>();
  const subs = new Set<{ client: WsClient; channels: string[] }>();
  let held: (() => void)[] = [];
  const knobs: Knobs = defaults();
  const log = {
    connections: 0,
    hellos: [] as Hello[],
    pongs: 0,
    polls: [] as { inm: string | null; prefer: string | null; auth: string | null; url: string }[],
    /** Raw text frames the client sent. */
    frames: [] as string[],
  };

  const chan = (c: string) => {
    let s = store.get(c);
    if (!s) store.set(c, (s = { n: 0, events: [] }));
    return s;
  };
  const head = (c: string) => `${epoch}-${chan(c).n}`;
  const heads = (cs: string[]) => Object.fromEntries(cs.map((c) => [c, head(c)]));
  const tag = (cur: Record<string, string>) =>
    '"' + Object.keys(cur).sort().map((c) => `${c}=${cur[c]}`).join(';') + '"';

  /** Events after `cursor` on c, or one reset when they cannot all be proven held. */
  function after(c: string, cursor: string): Msg[] {
    const s = chan(c);
    const m = /^(\w+)-(\d+)$/.exec(cursor);
    const n = m && m[1] === epoch ? +m[2]! : -1;
    const oldest = s.events[0]?.n ?? s.n + 1;
    if (n < 0 || n > s.n || n + 1 < oldest) return [{ type: 'reset', channel: c, cursor: head(c) }];
    return s.events.filter((e) => e.n > n).map((e) => ({ type: 'event', channel: c, cursor: `${epoch}-${e.n}`, data: e.data }));
  }

  function publish(channel: string, data: unknown): string {
    const s = chan(channel);
    s.n++;
    s.events.push({ n: s.n, data });
    while (s.events.length > knobs.history) s.events.shift();
    const cursor = `${epoch}-${s.n}`;
    const frame = JSON.stringify({ type: 'event', channel, cursor, data });
    for (const sub of subs) if (sub.channels.includes(channel)) sub.client.send(frame);
    release();
    return cursor;
  }

  /** End held long-polls (they answer by the current heads). */
  function release() {
    const h = held;
    held = [];
    h.forEach((f) => f());
  }

  const link = ws.link(base.replace(/^http/, 'ws') + '/v1/ws');
  const wsHandler = link.addEventListener('connection', ({ client }) => {
    log.connections++;
    if (knobs.ws === 'refuse') return client.close(1006);
    client.addEventListener('message', (e) => {
      const text = String(e.data);
      log.frames.push(text);
      const m = JSON.parse(text);
      if (m.type === 'pong') return void log.pongs++;
      if (m.type !== 'hello') return client.close(4400, 'bad hello');
      log.hellos.push(m);
      if (knobs.ws === 'mute') return void muted.push(() => answer(client, m));
      answer(client, m);
    });
  });

  /** Hellos left unanswered in 'mute' mode, answered later by answerMuted(). */
  let muted: (() => void)[] = [];
  function answer(client: WsClient & { addEventListener(t: 'close', f: () => void): void }, m: Hello) {
    {
      const forced = knobs.closeOnHello.shift();
      if (forced) return client.close(forced[0], forced[1]);
      if (!knobs.accept(m.token)) return client.close(4401, 'token');
      const channels = Object.keys(m.channels);
      if (knobs.granted && channels.some((c) => !knobs.granted!.includes(c))) return client.close(4403, 'channel');
      client.send(JSON.stringify({ type: 'welcome', ping: knobs.ping, channels: heads(channels) }));
      for (const c of channels) if (m.channels[c] !== null) for (const x of after(c, m.channels[c])) client.send(JSON.stringify(x));
      const sub = { client, channels };
      subs.add(sub);
      client.addEventListener('close', () => subs.delete(sub));
    }
  }

  const pollHandler = http.get(base + '/v1/poll', async ({ request }) => {
    const inm = request.headers.get('If-None-Match');
    const prefer = request.headers.get('Prefer');
    const auth = request.headers.get('Authorization');
    log.polls.push({ inm, prefer, auth, url: request.url });
    const forced = knobs.pollQueue.shift();
    if (forced === 'network') return HttpResponse.error();
    const common = { 'Cache-Control': 'no-cache, private', 'X-Poll-Interval': String(knobs.pollInterval) };
    if (forced) return new HttpResponse(forced.body ?? null, { status: forced.status, headers: { ...common, ...forced.headers } });
    const err = (status: number, error: string) => HttpResponse.json({ error, message: error }, { status, headers: common });
    if (!auth?.startsWith('Bearer ') || !knobs.accept(auth.slice(7))) return err(401, 'token');
    const channels = (new URL(request.url).searchParams.get('channels') ?? '').split(',');
    if (knobs.granted && channels.some((c) => !knobs.granted!.includes(c))) return err(403, 'channel');
    if (!inm) return HttpResponse.json({ messages: [] }, { headers: { ...common, ETag: tag(heads(channels)) } });
    const held0 = /^"(.*)"$/.exec(inm);
    if (!held0) return err(400, 'validator');
    const cur: Record<string, string> = {};
    for (const part of held0[1]!.split(';')) {
      const [c, v] = part.split('=');
      cur[c!] = v!;
    }
    if (channels.some((c) => !(c in cur))) return err(400, 'validator');
    let applied: string | undefined;
    const wait = /wait=(\d+)/.exec(prefer ?? '');
    if (inm === tag(heads(channels)) && wait && knobs.longPoll) {
      applied = `wait=${wait[1]}`;
      await new Promise<void>((r) => {
        held.push(r);
        request.signal.addEventListener('abort', () => r());
      });
    }
    if (inm === tag(heads(channels)))
      return new HttpResponse(null, { status: 304, headers: { ...common, ETag: inm, ...(applied ? { 'Preference-Applied': applied } : {}) } });
    const messages = channels.flatMap((c) => after(c, cur[c]!));
    const next = { ...cur };
    for (const m of messages) next[m.channel] = m.cursor;
    return HttpResponse.json({ messages }, { headers: { ...common, ETag: tag(next), ...(applied ? { 'Preference-Applied': applied } : {}) } });
  });

  return {
    base,
    knobs,
    log,
    handlers: [wsHandler, pollHandler],
    publish,
    release,
    heads,
    /** Answer the hellos 'mute' mode held back (a slow welcome), as if the mode were 'ok'. */
    answerMuted() {
      const m = muted;
      muted = [];
      m.forEach((f) => f());
    },
    /** Live WebSocket subscriptions. */
    subscribers: () => subs.size,
    /** Close every subscribed socket with `code`. */
    closeAll(code = 1011, reason = '') {
      for (const s of [...subs]) s.client.close(code, reason);
    },
    /** Send a raw frame to every subscribed socket. */
    sendRaw(text: string) {
      for (const s of subs) s.client.send(text);
    },
    /** Forget history and start a new cursor epoch (an in-memory server restart). */
    restart() {
      epoch = String.fromCharCode(epoch.charCodeAt(0) + 1);
      store.clear();
    },
    reset() {
      delete knobs.granted;
      Object.assign(knobs, defaults());
      log.connections = log.pongs = 0;
      log.hellos.length = log.polls.length = log.frames.length = 0;
      store.clear();
      subs.clear();
      release();
      muted = [];
      epoch = 'a';
    },
  };
}

export type FakeTidings = ReturnType<typeof fakeTidings>;
