// tidings/react in a real browser: a React 19 page in StrictMode, bundled with
// esbuild from the shipped builds (dist/tidings.mjs, dist/react.mjs, as an app
// would get them from the package), against the real server.
import { build } from 'esbuild';
import type { WebSocket as PageSocket } from '@playwright/test';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { test, expect } from './fixtures.js';
import { PUBLISHER_KEY, SUBSCRIBER_SECRET } from './support/server.js';
import { ROOT } from './support/paths.js';
import { signSubscriberToken } from '../server/auth/tokens.js';


/** The page: one client for the app (useTidingsClient), its state, its channel, and a widget on another channel that can be unmounted. */
const APP = `
import { createClient } from 'tidings';
import { useChannel, useConnectionState, useTidingsClient } from 'tidings/react';
import { StrictMode, createElement as h, useState } from 'react';
import { createRoot } from 'react-dom/client';

const params = new URLSearchParams(location.search);
function List({ id, items }) {
  return h('ul', { id }, items.map((x, i) => h('li', { key: i }, x)));
}
function News({ client }) {
  const [items, setItems] = useState([]);
  useChannel(client, 'news', (e) => setItems((xs) => [...xs, e.data.text]));
  return h(List, { id: 'news', items });
}
function App() {
  const client = useTidingsClient(() =>
    createClient({ url: params.get('server'), token: params.get('token'), channels: ['user:r'], backoff: { base: 200 } }),
  );
  const state = useConnectionState(client);
  const [mail, setMail] = useState([]);
  const [showNews, setShowNews] = useState(false);
  useChannel(client, 'user:r', (e) => setMail((xs) => [...xs, e.data.text]));
  window.channels = () => client?.channels() ?? [];
  return h('main', null,
    h('p', { id: 'state' }, String(state)),
    h('button', { id: 'news-toggle', onClick: () => setShowNews((x) => !x) }, showNews ? 'hide news' : 'show news'),
    h(List, { id: 'mail', items: mail }),
    showNews ? h(News, { client }) : null,
  );
}
const root = createRoot(document.getElementById('root'));
root.render(h(StrictMode, null, h(App)));
window.unmountApp = () => root.unmount();
`;

let bundle = '';
/** Serves the page from a loopback origin of its own (Chromium's local network access checks refuse a page fulfilled by page.route to reach loopback). */
let site: Server;
let origin = '';
test.beforeAll(async () => {
  site = createServer((req, res) => {
    if (req.url === '/app.js') return void res.writeHead(200, { 'content-type': 'text/javascript' }).end(bundle);
    res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><div id="root"></div><script type="module" src="/app.js"></script>');
  });
  await new Promise<void>((r) => site.listen(0, '127.0.0.1', r));
  origin = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;
  const out = await build({
    stdin: { contents: APP, loader: 'jsx', resolveDir: ROOT },
    bundle: true,
    format: 'esm',
    platform: 'browser',
    write: false,
    define: { 'process.env.NODE_ENV': '"development"' }, // StrictMode's double effects run in development only
    alias: { tidings: join(ROOT, 'dist/tidings.mjs'), 'tidings/react': join(ROOT, 'dist/react.mjs') },
  });
  bundle = out.outputFiles[0]!.text;
});
test.afterAll(async () => {
  site.closeAllConnections();
  await new Promise((r) => site.close(r));
});

test('a StrictMode page opens one WebSocket, shows its state and mail, subscribes a widget channel while mounted, and closes on unmount', async ({ page, tidings }) => {
  const sockets: PageSocket[] = [];
  page.on('websocket', (ws) => sockets.push(ws));
  const token = await signSubscriberToken(SUBSCRIBER_SECRET, { sub: 'r', ch: ['user:r', 'news'], ttlSeconds: 300 });
  const publish = async (channel: string, text: string) => {
    const res = await fetch(`${tidings.base}/v1/publish`, {
      method: 'POST',
      headers: { authorization: `Bearer ${PUBLISHER_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ channel, data: { text } }),
    });
    expect(res.status).toBe(200);
  };

  await page.goto(`${origin}/?${new URLSearchParams({ server: tidings.base, token })}`);
  await expect(page.locator('#state')).toHaveText('open');
  expect(sockets).toHaveLength(1); // StrictMode mounts twice; the client is created once

  await publish('user:r', 'hello');
  await expect(page.locator('#mail li')).toHaveText(['hello']);

  // The widget's channel is subscribed while it is mounted, and only then.
  await page.click('#news-toggle');
  await expect.poll(() => page.evaluate(() => (window as unknown as { channels(): string[] }).channels())).toEqual(['user:r', 'news']);
  await publish('news', 'n1');
  await expect(page.locator('#news li')).toHaveText(['n1']);
  await page.click('#news-toggle');
  await expect.poll(() => page.evaluate(() => (window as unknown as { channels(): string[] }).channels())).toEqual(['user:r']);
  await publish('user:r', 'second');
  await expect(page.locator('#mail li')).toHaveText(['hello', 'second']); // nothing lost on the app's own channel

  await page.evaluate(() => (window as unknown as { unmountApp(): void }).unmountApp());
  await expect.poll(() => sockets.every((ws) => ws.isClosed())).toBe(true);
});
