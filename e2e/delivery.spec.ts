// Delivery: live events, reconnect after a drop, reset after a restart, many tabs.
import { test, expect, PAGE_KINDS } from './fixtures.js';

for (const kind of PAGE_KINDS) {
  test.describe(`${kind} page`, () => {
    test('shows an event published through /v1/publish', async ({ openInbox, tidings }) => {
      const inbox = await openInbox({ kind });
      await inbox.waitFor('open', 'websocket');
      const [cursor] = await tidings.mail(inbox.channel, 'Welcome aboard');
      await inbox.expectDelivered([cursor!]);
      await expect(inbox.page.locator('#mails li').first()).toContainText('Welcome aboard');
      await expect(inbox.page.locator('#cursor')).toHaveAttribute('data-cursor', cursor!);
    });

    test('reconnects after the server drops every connection and shows, in order, what was published meanwhile', async ({ openInbox, tidings }) => {
      const inbox = await openInbox({ kind });
      await inbox.waitFor('open', 'websocket');
      const before = await tidings.mail(inbox.channel, 'before the drop');
      await inbox.expectDelivered(before);

      // Close 1011 then publish at once: the page is reconnecting (backoff) while these land.
      const { dropped } = await tidings.simulate('drop');
      expect(dropped).toBeGreaterThanOrEqual(1);
      const away = await tidings.mail(inbox.channel, 'away 1', 'away 2', 'away 3');
      await inbox.waitFor('open', 'websocket');
      const after = await tidings.mail(inbox.channel, 'after');
      await inbox.expectDelivered([...before, ...away, ...after]);
      expect((await inbox.states()).map((s) => s.state)).toContain('connecting');
      expect((await inbox.counters()).resets).toBe(0);
    });
  });
}

test('a live event adds its own item to the listing and leaves the items shown in place', async ({ openInbox, tidings }) => {
  const inbox = await openInbox();
  await inbox.waitFor('open', 'websocket');
  const first = await tidings.mail(inbox.channel, 'one', 'two');
  await inbox.expectDelivered(first);
  // Rebuilding the whole listing per event made a burst (a replay after a takeover) quadratic: a page that
  // busy answered its pings late and lost its connection (e2e/share.spec.ts, the halted leader).
  await inbox.page.evaluate(() => document.querySelectorAll('#mails li').forEach((li) => ((li as HTMLElement).dataset['kept'] = '1')));
  const next = await tidings.mail(inbox.channel, 'three');
  await inbox.expectDelivered([...first, ...next]);
  expect(await inbox.page.locator('#mails li').evaluateAll((lis) => lis.map((li) => (li as HTMLElement).dataset['kept'] ?? ''))).toEqual(['', '1', '1']);
});

test('the "Send me a test mail" button delivers a mail to the page itself', async ({ openInbox }) => {
  const inbox = await openInbox();
  await inbox.waitFor('open', 'websocket');
  await inbox.page.getByRole('button', { name: 'Send me a test mail' }).click();
  await expect(inbox.page.locator('#mails li')).toHaveCount(1);
  await expect(inbox.page.locator('#mails li').first()).toHaveAttribute('data-subject', 'Test mail #1');
  await inbox.expectDelivered(await inbox.received());
});

test('the simulate panel drops the connection from the page and it comes back', async ({ openInbox, tidings }) => {
  const inbox = await openInbox();
  await inbox.waitFor('open', 'websocket');
  await inbox.page.getByRole('button', { name: 'Drop every connection' }).click();
  await expect.poll(async () => (await inbox.states()).map((s) => s.state)).toContain('connecting');
  await inbox.waitFor('open', 'websocket');
  await inbox.expectDelivered(await tidings.mail(inbox.channel, 'after the button'));
});

test('after a server restart the page gets reset and reloads its now empty listing', async ({ openInbox, tidings }) => {
  const inbox = await openInbox();
  await inbox.waitFor('open', 'websocket');
  const old = await tidings.mail(inbox.channel, 'old 1', 'old 2');
  await inbox.expectDelivered(old);
  const loadsBefore = (await inbox.counters()).inboxLoads;

  await tidings.restart(); // in-memory bus: the new process knows none of the old cursors
  await expect(inbox.page.locator('#notice')).toBeVisible({ timeout: 10_000 });
  await expect(inbox.page.locator('#notice')).toContainText('Mailbox reloaded');
  await inbox.waitFor('open', 'websocket');
  const c = await inbox.counters();
  expect(c.resets).toBe(1);
  await expect.poll(async () => (await inbox.counters()).inboxLoads).toBeGreaterThan(loadsBefore);
  // The new server holds none of the old mails: the reloaded listing drops them.
  await expect(inbox.page.locator('#mails li')).toHaveCount(0);

  const fresh = await tidings.mail(inbox.channel, 'after restart');
  await inbox.expectDelivered(fresh);
  await expect(inbox.page.locator('#mails li')).toHaveCount(1);
});

test('several tabs of the same page each receive every event once', async ({ openInbox, tidings, context }) => {
  const tabs = [];
  for (let i = 0; i < 3; i++) tabs.push(await openInbox({ page: await context.newPage() }));
  for (const t of tabs) await t.waitFor('open', 'websocket');
  const cursors = await tidings.mail(tabs[0]!.channel, 'to every tab 1', 'to every tab 2');
  for (const t of tabs) await t.expectDelivered(cursors);
});
