// The Tidings demo inbox: a tiny web-mail listing that updates live.
//
// Shared by the script-tag demo page (server/demo/index.html, SDK from
// /tidings.min.js) and the e2e ESM page (e2e/pages/esm/main.js, SDK bundled by
// rollup), so both are driven by the same specs. It renders into `root`, and
// exposes `window.demo` for tests: what the SDK delivered (duplicates
// included, so a test can catch them), every state change, every error.
//
// Query parameters (all optional) let tests shorten every timing:
//   user=<id>        mailbox (default: a random one, kept for the browser profile)
//   ttl=<s>          token lifetime
//   grace=<ms>       pingGrace     probe=<ms>    first WebSocket probe while polling
//   backoff=<ms>     backoff base (cap = 10 × base)     connect=<ms>  connectTimeout (101 to welcome)
//   longpoll=<s>     long-poll wait (0 = plain polling)
//   transport=auto|websocket|polling              fallback=<n>  failed attempts before polling
//   channels=<a,b>   more channels besides demo:<user> (demo:<user>:<name>, demo:news)
//   share=0          one connection per tab (default: tabs of one user share one)

const h = (s) =>
  String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

// One mailbox per browser profile, as a signed-in web-mail session is (its cookie reaches every tab): tabs opened
// without ?user= are one user, so they get the same mail and share one connection. (It was per tab, in
// sessionStorage: a second tab was another user, got none of the first's mail and shared nothing.)
function randomUser() {
  const kept = localStorage.getItem('tidings-demo-user');
  if (kept) return kept;
  const u = 'guest-' + Math.random().toString(36).slice(2, 8);
  localStorage.setItem('tidings-demo-user', u);
  return u;
}

const LAYOUT = `
<header>
  <h1>Tidings <small>demo inbox</small></h1>
  <div class="badge" id="badge" aria-live="polite">
    <span class="dot"></span>
    <span id="state" data-state="">…</span>
    <span id="transport" data-transport=""></span>
    <span class="cursor">cursor <code id="cursor" data-cursor="">–</code></span>
    <span class="leader" id="leader" data-leader="" title="Tabs of one user share one connection: one tab holds it."></span>
  </div>
</header>
<main>
  <section class="mailbox">
    <div class="toolbar">
      <span>Inbox of <b id="user"></b> <code id="channel"></code></span>
      <button id="send" type="button">Send me a test mail</button>
    </div>
    <p id="notice" class="notice" hidden></p>
    <ul id="mails" class="mails"></ul>
    <p id="empty" class="empty">No mail yet. Send yourself one, or publish to this channel with <code>POST /v1/publish</code>.</p>
  </section>
  <aside class="simulate">
    <h2>Simulate</h2>
    <p>Break the connection and watch the client recover: nothing lost, nothing twice.</p>
    <button id="sim-drop" type="button" data-action="drop">Drop every connection</button>
    <button id="sim-block" type="button" data-action="block-ws">Block WebSocket (force polling)</button>
    <button id="sim-unblock" type="button" data-action="unblock-ws">Unblock WebSocket</button>
    <button id="sim-freeze" type="button" data-action="freeze">Freeze (silent connection)</button>
    <button id="sim-unfreeze" type="button" data-action="unfreeze">Unfreeze</button>
    <button id="reconnect" type="button">client.reconnect()</button>
    <h2>Log</h2>
    <ol id="log" class="log"></ol>
  </aside>
</main>`;

/**
 * @param {object} o
 * @param {(options: object) => any} o.createClient  the SDK's factory
 * @param {string} [o.server]  the Tidings server's origin (default: this page's)
 * @param {HTMLElement} [o.root]
 */
export function startInbox({ createClient, server = location.origin, root = document.body }) {
  const params = new URLSearchParams(location.search);
  const num = (k) => (params.has(k) && params.get(k) !== '' ? Number(params.get(k)) : undefined);
  const user = params.get('user') || randomUser();
  const ttl = num('ttl');
  root.innerHTML = LAYOUT;
  const $ = (id) => root.querySelector('#' + id);
  $('user').textContent = user;

  const demo = {
    user,
    channel: 'demo:' + user,
    client: null,
    /** Every `event` the SDK emitted, in order, duplicates included. */
    received: [],
    /** Every `reset` the SDK emitted. */
    resets: [],
    /** Every `state` change: {state, transport, at, wall} (at = performance.now(), wall = Date.now()). */
    states: [],
    /** Every change of `client.leader`: {leader, wall}: this tab took (true) or gave up (false) the shared connection. */
    leaders: [],
    errors: [],
    tokenFetches: 0,
    inboxLoads: 0,
    /** The listing as shown, oldest first: [{cursor, data}]. */
    mails: [],
  };
  window.demo = demo;

  const log = (text) => {
    const li = document.createElement('li');
    li.textContent = `${new Date().toLocaleTimeString()} ${text}`;
    $('log').prepend(li);
    while ($('log').children.length > 50) $('log').lastElementChild.remove();
  };

  // ---- the listing: ordered by cursor (arrival order on one channel), each cursor once
  const item = (m) => {
    const li = document.createElement('li');
    li.dataset.cursor = m.cursor;
    li.dataset.subject = String(m.data?.subject ?? '');
    const at = typeof m.data?.at === 'number' ? new Date(m.data.at).toLocaleTimeString() : '';
    li.innerHTML = `<span class="from">${h(m.data?.from ?? 'unknown')}</span>
            <span class="subject">${h(m.data?.subject ?? JSON.stringify(m.data))}</span>
            <time>${h(at)}</time>`;
    return li;
  };
  // The whole listing after a fetch; a live event only adds its own item: rebuilding hundreds of items per
  // event makes a burst (a replay) cost quadratic time, and a page that busy misses its pongs.
  const render = () => {
    $('mails').replaceChildren(...demo.mails.slice().reverse().map(item)); // newest on top, as mail clients do
    $('empty').hidden = demo.mails.length > 0;
  };
  const shown = new Set();
  const add = (m) => {
    if (shown.has(m.cursor)) return false; // a replay overlapping the listing: show it once
    shown.add(m.cursor);
    demo.mails.push(m);
    return true;
  };

  // Events that arrive while a listing request is in flight may or may not be in
  // it; keep them and merge after, so none is lost and none shown twice. One
  // listing request at a time, so a slow, older answer never overwrites a newer one.
  let during = null;
  const loadInbox = async () => {
    during = [];
    try {
      const r = await fetch(`${server}/demo/inbox?user=${encodeURIComponent(user)}`);
      if (!r.ok) throw new Error(`inbox: HTTP ${r.status}`);
      const body = await r.json();
      demo.inboxLoads++;
      demo.mails = [];
      shown.clear();
      for (const m of body.mails) add(m);
      for (const m of during) add(m);
      render();
    } finally {
      during = null;
    }
  };
  let inflight = null;
  let again = false;
  const reload = () => {
    if (inflight) {
      again = true;
      return inflight;
    }
    inflight = (async () => {
      do {
        again = false;
        await loadInbox();
      } while (again);
    })()
      .catch((e) => log(`inbox failed: ${e.message}`))
      .finally(() => (inflight = null));
    return inflight;
  };

  // The SDK passes the channels the token must grant: the leader of a tab group asks for the union of the group's.
  const token = async ({ channels } = {}) => {
    const q = new URLSearchParams({ user });
    if (ttl !== undefined) q.set('ttl', String(ttl));
    if (channels) q.set('channels', channels.join(','));
    const r = await fetch(`${server}/demo/token?${q}`);
    if (!r.ok) throw new Error(`token: HTTP ${r.status}`);
    demo.tokenFetches++;
    return (await r.json()).token;
  };

  const extra = (params.get('channels') || '').split(',').filter((c) => c && c !== demo.channel);
  const options = { url: server, token, channels: [demo.channel, ...extra] };
  if (params.get('share') === '0') options.share = false;
  if (params.get('transport')) options.transport = params.get('transport');
  if (num('grace') !== undefined) options.pingGrace = num('grace');
  if (num('fallback') !== undefined) options.fallbackAfter = num('fallback');
  if (num('connect') !== undefined) options.connectTimeout = num('connect');
  if (num('longpoll') !== undefined) options.longPoll = num('longpoll');
  if (num('probe') !== undefined) options.probe = { first: num('probe'), max: num('probe') * 4 };
  if (num('backoff') !== undefined) options.backoff = { base: num('backoff'), cap: num('backoff') * 10, resetAfter: 5000 };

  const client = createClient(options);
  demo.client = client;

  const badge = () => {
    const s = client.state;
    const t = client.transport ?? '';
    $('state').textContent = s;
    $('state').dataset.state = s;
    $('transport').textContent = t === 'websocket' ? 'WebSocket' : t === 'polling' ? 'polling' : '';
    $('transport').dataset.transport = t;
    $('badge').dataset.state = s;
    $('leader').dataset.leader = String(client.leader);
    $('leader').textContent = client.leader ? '★ this tab holds the connection' : 'shared from another tab';
  };
  // Leadership moves with the connection: a tab that takes it over goes through `connecting` to `open`.
  let wasLeader;
  const leaderCheck = () => {
    if (client.leader === wasLeader) return;
    wasLeader = client.leader;
    demo.leaders.push({ leader: wasLeader, wall: Date.now() });
    log(wasLeader ? 'this tab holds the connection' : 'this tab shares another tab’s connection');
    badge();
  };
  client.on('state', leaderCheck);
  setInterval(leaderCheck, 250);
  let connectedOnce = false;
  client.on('state', (s) => {
    // The first subscription starts "from now on": list again once it is in
    // place, so a mail published between the first listing and the subscription
    // still shows up.
    if (!connectedOnce && (s === 'open' || s === 'polling')) {
      connectedOnce = true;
      reload();
    }
    demo.states.push({ state: s, transport: client.transport ?? null, at: performance.now(), wall: Date.now() });
    log(`state ${s}${client.transport ? ' (' + client.transport + ')' : ''}`);
    badge();
  });
  client.on('event', (e) => {
    demo.received.push({ channel: e.channel, cursor: e.cursor, data: e.data, first: e.first, wall: Date.now() });
    $('cursor').textContent = e.cursor;
    $('cursor').dataset.cursor = e.cursor;
    const m = { cursor: e.cursor, data: e.data };
    if (during) during.push(m);
    if (add(m)) {
      $('mails').prepend(item(m));
      $('empty').hidden = true;
    }
  });
  client.on('reset', (e) => {
    demo.resets.push({ channel: e.channel, cursor: e.cursor });
    $('cursor').textContent = e.cursor;
    $('cursor').dataset.cursor = e.cursor;
    // PROTOCOL.md: after a reset, re-fetch state out of band.
    const n = $('notice');
    n.hidden = false;
    n.textContent = 'Mailbox reloaded: the server could not replay what you missed, so the listing was fetched again.';
    log('reset: reloading the mailbox');
    reload();
  });
  client.on('error', (err) => {
    demo.errors.push({ code: err?.code, closeCode: err?.closeCode, status: err?.status, message: err?.message });
    log(`error ${err?.code ?? ''} ${err?.closeCode ?? err?.status ?? ''} ${err?.message ?? ''}`);
  });
  badge();

  $('channel').textContent = demo.channel;
  $('send').addEventListener('click', async () => {
    const r = await fetch(`${server}/demo/send?user=${encodeURIComponent(user)}`, { method: 'POST' });
    log(r.ok ? 'sent a test mail' : `send failed: HTTP ${r.status}`);
  });
  for (const b of root.querySelectorAll('[data-action]')) {
    b.addEventListener('click', async () => {
      const r = await fetch(`${server}/demo/simulate?action=${b.dataset.action}`, { method: 'POST' });
      log(r.ok ? `simulate ${b.dataset.action}` : `simulate failed: HTTP ${r.status}`);
    });
  }
  $('reconnect').addEventListener('click', () => client.reconnect());

  demo.ready = reload();
  return demo;
}
