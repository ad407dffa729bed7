// The second-generation SDK core (issue 9) in real Chromium against the
// companion server, the script-tag build (dist/tidings.min.js) on a page of
// the server's origin: two persisting clients across a reload, runtime
// subscribe/unsubscribe under a steady stream, and a throwing listener.
import type { Page } from '@playwright/test';
import { test, expect } from './fixtures.js';
import { signSubscriberToken } from '../server/auth/tokens.js';
import { SUBSCRIBER_SECRET, type TidingsServer } from './support/server.js';

/** A bare page of the server's origin with window.Tidings loaded. */
async function sdkPage(page: Page, tidings: TidingsServer): Promise<void> {
  await page.goto(`${tidings.base}/healthz`);
  await page.addScriptTag({ url: `${tidings.base}/tidings.min.js` });
}

/**
 * Creates window.clients[name] for a demo user (channel `demo:<user>`, token
 * from /demo/token, persist on), recording every event's data in got[name].
 */
async function start(page: Page, clients: Record<string, string>, extra: Record<string, unknown> = {}): Promise<void> {
  await page.evaluate(
    async ({ clients, extra }) => {
      const w = window as any;
      w.clients ??= {};
      w.got ??= {};
      for (const [name, user] of Object.entries(clients)) {
        const token = async () => (await (await fetch(`/demo/token?user=${user}`)).json()).token;
        const c = w.Tidings.createClient({ url: location.origin, token, channels: [`demo:${user}`], persist: true, ...extra });
        w.got[name] = [];
        c.on('event', (e: any) => w.got[name].push(e.data.subject));
        w.clients[name] = c;
      }
      await Promise.all(Object.keys(clients).map((n) => w.clients[n].ready()));
    },
    { clients, extra },
  );
}

const got = (page: Page, name: string) => page.evaluate((n) => (window as any).got[n] as string[], name);

test('two persisting clients on one page both resume after a reload: nothing published during the reload is lost', async ({ page, tidings }) => {
  await sdkPage(page, tidings);
  await start(page, { mail: 'mailbox1', news: 'newsdesk1' });
  await tidings.mail('demo:mailbox1', 'm1');
  await tidings.mail('demo:newsdesk1', 'n1');
  await expect.poll(async () => [await got(page, 'mail'), await got(page, 'news')]).toEqual([['m1'], ['n1']]);

  await page.evaluate(() => Object.values((window as any).clients).forEach((c: any) => c.close()));
  await tidings.mail('demo:mailbox1', 'm2', 'm3'); // published while the page reloads
  await tidings.mail('demo:newsdesk1', 'n2');
  await page.reload();
  await page.addScriptTag({ url: `${tidings.base}/tidings.min.js` });
  await start(page, { mail: 'mailbox1', news: 'newsdesk1' });
  await expect.poll(async () => [await got(page, 'mail'), await got(page, 'news')]).toEqual([['m2', 'm3'], ['n2']]);
});

test('subscribe() and unsubscribe() under a steady stream lose nothing on the other channel', async ({ page, tidings }) => {
  await sdkPage(page, tidings);
  // The demo token grants one channel; this client needs two.
  const token = await signSubscriberToken(SUBSCRIBER_SECRET, { sub: 'streamer1', ch: ['demo:streamer1', 'demo:streamer1-extra'], ttlSeconds: 600 });
  await start(page, { main: 'streamer1' }, { token });
  const sent: string[] = [];
  let stop = false;
  const stream = (async () => {
    for (let i = 0; !stop; i++) {
      sent.push(`s${i}`);
      await tidings.mail('demo:streamer1', `s${i}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  for (let k = 0; k < 3; k++) {
    await page.evaluate(() => (window as any).clients.main.subscribe('demo:streamer1-extra'));
    await page.waitForTimeout(150);
    await page.evaluate(() => (window as any).clients.main.unsubscribe('demo:streamer1-extra'));
    await page.waitForTimeout(150);
  }
  stop = true;
  await stream;
  await expect.poll(() => got(page, 'main'), { timeout: 10_000 }).toEqual(sent);
  expect(sent.length).toBeGreaterThan(10);
  expect(await page.evaluate(() => (window as any).clients.main.state)).toBe('open');
});

test('a throwing listener is reported, and the event still reaches the other listeners', async ({ page, tidings }) => {
  await sdkPage(page, tidings);
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await start(page, { main: 'thrower1' });
  await page.evaluate(() => (window as any).clients.main.on('event', () => { throw new Error('listener bug'); }));
  await page.evaluate(() => {
    const w = window as any;
    w.after = [];
    w.clients.main.on('event', (e: any) => w.after.push(e.data.subject));
  });
  await tidings.mail('demo:thrower1', 'x1', 'x2');
  await expect.poll(() => page.evaluate(() => (window as any).after)).toEqual(['x1', 'x2']);
  await expect.poll(() => errors.filter((m) => m.includes('listener bug')).length).toBe(2);
  expect(await got(page, 'main')).toEqual(['x1', 'x2']);
  expect(await page.evaluate(() => (window as any).clients.main.state)).toBe('open');
});

test('a fleet of 20 clients through a server crash (SIGKILL) and a restart 1.6 s later: all back on WebSocket, none through polling, nothing lost', async ({ page, tidings }) => {
  test.setTimeout(60_000);
  await sdkPage(page, tidings);
  const users = Array.from({ length: 20 }, (_, i) => `fleet${i}`);
  await start(page, Object.fromEntries(users.map((u) => [u, u])));
  await page.evaluate(() => {
    const w = window as any;
    w.polled = 0;
    for (const c of Object.values(w.clients) as any[]) c.on('state', (s: string) => void (s === 'polling' && w.polled++));
  });
  const port = tidings.port;
  await tidings.stop('SIGKILL');
  await page.waitForTimeout(1600);
  await tidings.start(port);
  await expect
    .poll(() => page.evaluate(() => Object.values((window as any).clients).filter((c: any) => c.transport === 'websocket').length), { timeout: 30_000 })
    .toBe(users.length);
  expect(await page.evaluate(() => (window as any).polled)).toBe(0);
  for (const u of users) await tidings.mail(`demo:${u}`, `after ${u}`);
  for (const u of users) await expect.poll(() => got(page, u)).toEqual([`after ${u}`]);
});
