// Two server nodes on one Redis, two browser pages, one on each node: a mail
// published on either node shows on both pages, and a node restart costs its
// page nothing (history lives in Redis: no reset, no lost mail).
import type { Page } from '@playwright/test';
import { test, expect, Inbox, FAST } from './fixtures.js';
import { TidingsServer } from './support/server.js';
import { startRedis, type TestRedis } from '../test/support/redis.js';

let redis: TestRedis;
let nodes: TidingsServer[] = [];

test.beforeEach(async () => {
  redis = await startRedis();
  nodes = [new TidingsServer({ TIDINGS_REDIS_URL: redis.url }), new TidingsServer({ TIDINGS_REDIS_URL: redis.url })];
  await Promise.all(nodes.map((n) => n.start(0)));
});

test.afterEach(async ({}, testInfo) => {
  await Promise.all(nodes.map((n) => n.stop('SIGKILL')));
  if (testInfo.status !== testInfo.expectedStatus) {
    for (const [i, n] of nodes.entries()) await testInfo.attach(`node-${i + 1}-output.txt`, { body: n.output, contentType: 'text/plain' });
  }
  await redis.stop();
});

/** The demo page served by `node`, as the user `user`. */
async function openOn(page: Page, node: TidingsServer, user: string): Promise<Inbox> {
  const q = new URLSearchParams({ user });
  for (const [k, v] of Object.entries(FAST)) q.set(k, String(v));
  await page.goto(`${node.base}/?${q}`);
  await page.waitForFunction(() => !!(window as any).demo?.client, undefined, { timeout: 5_000 });
  return new Inbox(page, user);
}

test('two pages on two nodes both show mails published on either node, in order, and survive a node restart without reset', async ({ browser }) => {
  // Two server processes, a Redis and two browsers, plus a drain and restart:
  // 10 s alone, over 20 s on a loaded 2-core machine. Room for that, not a hang.
  test.setTimeout(60_000);
  const [node1, node2] = nodes as [TidingsServer, TidingsServer];
  const ctxA = await browser.newContext();
  const ctxB = await browser.newContext();
  try {
    const a = await openOn(await ctxA.newPage(), node1, 'carol');
    const b = await openOn(await ctxB.newPage(), node2, 'carol');
    await a.waitFor('open', 'websocket');
    await b.waitFor('open', 'websocket');

    const first = [...(await node1.mail(a.channel, 'sent via node 1')), ...(await node2.mail(a.channel, 'sent via node 2'))];
    await a.expectDelivered(first);
    await b.expectDelivered(first);
    await expect(a.page.locator('#mails li').first()).toContainText('sent via node 2');
    await expect(b.page.locator('#mails li').first()).toContainText('sent via node 2');

    // Node 1 drains (1012) and comes back on the same port; mail keeps arriving through node 2.
    const restarting = node1.restart();
    const meanwhile = await node2.mail(a.channel, 'while node 1 restarts 1', 'while node 1 restarts 2');
    await restarting;
    await a.waitFor('open', 'websocket', 15_000);
    const after = await node1.mail(a.channel, 'node 1 is back');
    await a.expectDelivered([...first, ...meanwhile, ...after], 15_000);
    await b.expectDelivered([...first, ...meanwhile, ...after]);
    expect((await a.counters()).resets, 'history in Redis: the restarted node proves continuity').toBe(0);
    expect((await b.counters()).resets).toBe(0);
    expect((await a.states()).map((s) => s.state)).toContain('connecting');
  } finally {
    await ctxA.close();
    await ctxB.close();
  }
});
