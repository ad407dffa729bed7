// Transport fallback (WebSocket blocked → 304-aware long-polling → back to
// WebSocket) and the browser going offline.
import type { Response } from '@playwright/test';
import { test, expect, PAGE_KINDS } from './fixtures.js';

for (const kind of PAGE_KINDS) {
  test(`${kind} page: falls back to long-polling while WebSocket is blocked, then returns to WebSocket, losing nothing`, async ({ openInbox, tidings }) => {
    const inbox = await openInbox({ kind, longpoll: 1, probe: 1500 });
    const polls: { status: number; prefer: string | null; origin: string | null }[] = [];
    inbox.page.on('response', (r: Response) => {
      const req = r.request();
      if (req.method() === 'GET' && new URL(r.url()).pathname === '/v1/poll') {
        void req.allHeaders().then((h) => polls.push({ status: r.status(), prefer: h['prefer'] ?? null, origin: h['origin'] ?? null }));
      }
    });
    await inbox.waitFor('open', 'websocket');
    const first = await tidings.mail(inbox.channel, 'on websocket');
    await inbox.expectDelivered(first);

    await tidings.simulate('block-ws');
    await tidings.simulate('drop');
    const switching = await tidings.mail(inbox.channel, 'while switching');
    await inbox.waitFor('polling', 'polling', 15_000);
    await expect(inbox.page.locator('#transport')).toHaveText('polling');

    // The first poll is the plain check that HTTP gets through where WebSocket does not (no Prefer).
    expect(polls[0]!.prefer).toBeNull();
    // Nothing to say: the server holds the long-poll (Prefer: wait=1) and answers 304.
    await expect.poll(() => polls.filter((p) => p.status === 304 && p.prefer).length, { timeout: 8_000 }).toBeGreaterThanOrEqual(1);
    expect(polls.find((p) => p.status === 304 && p.prefer)!.prefer).toMatch(/^wait=1\b/);
    if (kind === 'esm') expect(polls[0]!.origin, 'cross-origin poll (CORS)').not.toBeNull();

    const polled = await tidings.mail(inbox.channel, 'by polling 1', 'by polling 2');
    await inbox.expectDelivered([...first, ...switching, ...polled]);

    await tidings.simulate('unblock-ws');
    await inbox.waitFor('open', 'websocket', 15_000);
    const back = await tidings.mail(inbox.channel, 'back on websocket');
    await inbox.expectDelivered([...first, ...switching, ...polled, ...back]);
    expect((await inbox.counters()).resets).toBe(0);
  });
}

test('goes offline with the browser and catches up when it is back online', async ({ openInbox, tidings, context }) => {
  const inbox = await openInbox();
  await inbox.waitFor('open', 'websocket');
  const before = await tidings.mail(inbox.channel, 'before offline');
  await inbox.expectDelivered(before);

  await context.setOffline(true);
  await inbox.waitFor('offline');
  await expect(inbox.page.locator('#badge')).toHaveAttribute('data-state', 'offline');
  const meanwhile = await tidings.mail(inbox.channel, 'while offline 1', 'while offline 2');

  await context.setOffline(false);
  await inbox.waitFor('open', 'websocket');
  await inbox.expectDelivered([...before, ...meanwhile]);
  expect((await inbox.counters()).resets).toBe(0);
});

test('remembers for the tab that WebSocket failed: a reload starts on polling, and a probe brings it back', async ({ openInbox, tidings, page }) => {
  // Refused in the browser this time (a proxy that kills WebSockets), not by the server:
  // every socket to /v1/ws is closed 1011 before any `welcome`.
  let refuse = true;
  let refused = 0;
  await page.routeWebSocket(/\/v1\/ws$/, (ws) => {
    if (refuse) {
      refused++;
      return ws.close({ code: 1011, reason: 'refused by the test' });
    }
    ws.connectToServer();
  });
  // probe 60 s: no probe interferes until the test lowers the wall (below).
  const inbox = await openInbox({ probe: 60_000 });
  await inbox.waitFor('polling', 'polling', 15_000);
  expect(refused).toBeGreaterThanOrEqual(2);
  const first = await tidings.mail(inbox.channel, 'polled before reload');
  await inbox.expectDelivered(first);

  const refusedBeforeReload = refused;
  // Same tab, same sessionStorage. The first probe comes 2–4 s after polling starts
  // (uniform in [d/2, d]): late enough that the count below cannot include it on a
  // busy machine (with 1.5 s it sometimes did), early enough for the wait below.
  const reloaded = await openInbox({ probe: 4000 });
  await reloaded.waitFor('polling', 'polling');
  const onlyPolling = (await reloaded.states()).filter((s) => s.transport !== null).every((s) => s.transport === 'polling');
  expect(onlyPolling, 'started on polling without trying WebSocket first').toBe(true);
  expect(refused, 'no WebSocket attempt before polling').toBe(refusedBeforeReload);

  refuse = false;
  await reloaded.waitFor('open', 'websocket', 15_000);
  const back = await tidings.mail(reloaded.channel, 'after the probe');
  await reloaded.expectDelivered(back);
});
