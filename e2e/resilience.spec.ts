// A silent connection, a draining server, an expired token.
import { test, expect, duplicates, type Inbox } from './fixtures.js';
import { E2E_TIMINGS } from './support/server.js';

test('notices a silent (frozen) connection within ping + grace and reconnects', async ({ openInbox, tidings }) => {
  const grace = 1000;
  const inbox = await openInbox({ grace, connect: 2000 });
  await inbox.waitFor('open', 'websocket');
  const before = await tidings.mail(inbox.channel, 'before the freeze');
  await inbox.expectDelivered(before);

  const frozenAt = await inbox.page.evaluate(() => performance.now());
  await tidings.simulate('freeze'); // no pings, no events, no close: a zombie connection
  const unseen = await tidings.mail(inbox.channel, 'sent into the silence');
  await expect.poll(async () => (await inbox.states()).some((s) => s.at > frozenAt && s.state !== 'open'), { timeout: 8_000 }).toBe(true);
  const noticed = (await inbox.states()).find((s) => s.at > frozenAt && s.state !== 'open')!;
  const detectMs = noticed.at - frozenAt;
  test.info().annotations.push({ type: 'silence noticed after (ms)', description: String(Math.round(detectMs)) });
  // Dead after `ping` + grace of silence; the last message may have arrived up to
  // one ping before the freeze, and timers run late on a busy machine: allow slack.
  expect(detectMs).toBeLessThanOrEqual(E2E_TIMINGS.pingMs + grace + 1500);
  expect(await inbox.received()).not.toContain(unseen[0]);

  await tidings.simulate('unfreeze');
  await inbox.waitFor('open', 'websocket', 15_000);
  const after = await tidings.mail(inbox.channel, 'after the freeze');
  await inbox.expectDelivered([...before, ...unseen, ...after]);
});

test('unfrozen before the client noticed: the frozen connection ends and what it swallowed is replayed', async ({ openInbox, tidings }) => {
  // A long grace: the client cannot notice the silence before the unfreeze.
  const inbox = await openInbox({ grace: 30_000, backoff: 200 });
  await inbox.waitFor('open', 'websocket');
  const before = await tidings.mail(inbox.channel, 'before the freeze');
  await inbox.expectDelivered(before);
  await tidings.simulate('freeze');
  const unseen = await tidings.mail(inbox.channel, 'sent into the silence');
  await tidings.simulate('unfreeze');
  const after = await tidings.mail(inbox.channel, 'after the freeze');
  // (The connection stayed open: `after` came on it and `unseen` never did, with no reset.)
  await inbox.expectDelivered([...before, ...unseen, ...after]);
  expect((await inbox.counters()).resets).toBe(0);
});

test('after a drain (SIGTERM, 1012) pages reconnect spread over the announced window, not all at once', async ({ openInbox, tidings, context }) => {
  test.setTimeout(45_000);
  const N = 5;
  const tabs: Inbox[] = [];
  for (let i = 0; i < N; i++) tabs.push(await openInbox({ page: await context.newPage(), user: `tab${i}` }));
  for (const t of tabs) await t.waitFor('open', 'websocket');
  // When each page opens its next WebSocket: the reconnect delay the SDK chose.
  const attempts: number[][] = tabs.map(() => []);
  tabs.forEach((t, i) => t.page.on('websocket', () => attempts[i]!.push(Date.now())));

  const drainAt = Date.now();
  await tidings.restart(); // SIGTERM: 1012 with the window, exit 0; a new process on the same port
  const window = E2E_TIMINGS.drainWindowMs;

  const reopened: number[] = [];
  for (const t of tabs) {
    await t.waitFor('open', 'websocket', window + 10_000);
    const s = await t.states();
    const left = s.findIndex((x) => x.wall >= drainAt && x.state !== 'open');
    expect(left, 'the page left `open` on the drain').toBeGreaterThanOrEqual(0);
    const back = s.slice(left).find((x) => x.state === 'open')!;
    reopened.push(back.wall - drainAt);
  }
  const firstAttempt = attempts.map((a) => a[0]! - drainAt);
  test.info().annotations.push(
    { type: 'first reconnect attempt, ms after SIGTERM', description: firstAttempt.join(', ') },
    { type: 'open again, ms after SIGTERM', description: reopened.join(', ') },
  );
  // PROTOCOL.md: after 1012 each client waits a uniform random delay in [0, window].
  // All N first attempts within 10 % of the window has probability about
  // N × 0.1^(N-1) (0.05 % for N = 5); a client that ignored the window and
  // reconnected on its short backoff would land them all together.
  const spread = (xs: number[]) => Math.max(...xs) - Math.min(...xs);
  expect(spread(firstAttempt), `first attempts at ${firstAttempt.join(', ')} ms`).toBeGreaterThan(window * 0.1);
  expect(Math.max(...firstAttempt), 'no attempt later than the window (plus timer slack)').toBeLessThan(window + 1_000);
  expect(spread(reopened), `open again at ${reopened.join(', ')} ms`).toBeGreaterThan(window * 0.1);
  expect(Math.max(...reopened)).toBeLessThan(window + 5_000);

  for (const t of tabs) {
    const [c] = await tidings.mail(t.channel, 'after the drain');
    await t.expectDelivered([c!]);
    expect(duplicates(await t.received())).toEqual([]);
  }
});

test('fetches a fresh token when the old one has expired and carries on', async ({ openInbox, tidings }) => {
  const ttl = 2;
  const inbox = await openInbox({ ttl });
  await inbox.waitFor('open', 'websocket');
  // Every token the page holds was minted before it was open (a tab group's leader fetches the union token
  // before its hello), so they all expire by this clock + ttl; a slow page load must not push exp later.
  const openedAt = Date.now();
  const before = await tidings.mail(inbox.channel, 'with the first token');
  await inbox.expectDelivered(before);
  const fetchesBefore = (await inbox.counters()).tokenFetches;

  // exp = floor(mint time in s) + ttl and jose refuses it from that second on:
  // wait (on the wall clock, which is what exp is about) until it is surely past.
  const expiredBy = (Math.floor(openedAt / 1000) + ttl + 1) * 1000;
  await expect.poll(() => Date.now() >= expiredBy, { timeout: (ttl + 3) * 1000, intervals: [100] }).toBe(true);

  await tidings.simulate('drop'); // the reconnect's hello is checked against exp
  const away = await tidings.mail(inbox.channel, 'while reconnecting');
  await inbox.waitFor('open', 'websocket', 15_000);
  const after = await tidings.mail(inbox.channel, 'with a fresh token');
  await inbox.expectDelivered([...before, ...away, ...after]);
  const c = await inbox.counters();
  test.info().annotations.push({ type: 'errors', description: JSON.stringify(c.errors) });
  expect(c.tokenFetches).toBeGreaterThan(fetchesBefore);
  expect((await inbox.states()).map((s) => s.state)).not.toContain('stopped');
});
