// The demo page in Chromium through a real nginx configured with exactly the
// block of docs/deploy.md (upstream keepalive included): WebSocket delivery,
// then the polling fallback, all through the proxy.
import { test, expect, FAST, Inbox } from './fixtures.js';
import { PUBLISHER_KEY } from './support/server.js';
import { findNginx, startNginx, type Nginx } from '../test/support/nginx.js';

const NGINX = findNginx();

test.describe('through nginx (docs/deploy.md)', () => {
  test.skip(NGINX === null, 'no nginx binary (apt-get install nginx, or scripts/ensure-system-deps.sh)');
  let proxy: Nginx | null = null;
  test.afterEach(async () => {
    await proxy?.stop();
    proxy = null;
  });

  test('the page gets mail over WebSocket through the proxy, then over polling when WebSocket is blocked', async ({ page, tidings }) => {
    proxy = await startNginx(NGINX!, tidings.port);
    const publish = async (channel: string, subject: string): Promise<string> => {
      const r = await fetch(`${proxy!.url}/v1/publish`, {
        method: 'POST',
        headers: { authorization: `Bearer ${PUBLISHER_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ channel, data: { from: 'e2e@tidings', subject, at: Date.now() } }),
      });
      expect(r.status).toBe(200);
      return ((await r.json()) as { cursor: string }).cursor;
    };
    // Plain requests first, so nginx has idle upstream connections to reuse for the upgrade.
    for (let i = 0; i < 3; i++) expect((await fetch(`${proxy.url}/healthz`)).status).toBe(200);
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries({ ...FAST, user: 'proxied' })) q.set(k, String(v));
    await page.goto(`${proxy.url}/?${q}`);
    const inbox = new Inbox(page, 'proxied');
    await inbox.waitFor('open', 'websocket');
    const first = await publish(inbox.channel, 'through nginx');
    await inbox.expectDelivered([first]);

    // Upgrades refused from now on: the page falls back to long-polling, still through nginx.
    await tidings.simulate('block-ws');
    await tidings.simulate('drop');
    await inbox.waitFor('polling', 'polling', 15_000);
    const second = await publish(inbox.channel, 'polled through nginx');
    await inbox.expectDelivered([first, second]);
    await expect(page.locator('#mails li').first()).toContainText('polled through nginx');
  });
});
