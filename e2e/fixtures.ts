// Fixtures: a fresh companion server per test, the ESM page's static site per
// worker, and `openInbox` to load either page against that server.
import { test as base, expect, type Page } from '@playwright/test';
import { ESM_DIR } from './support/paths.js';
import { TidingsServer } from './support/server.js';
import { serveStatic, type StaticServer } from './support/static.js';

export { expect };

/** 'script': the demo page served by the server, SDK by script tag. 'esm': the rollup-bundled page on another origin. */
export type PageKind = 'script' | 'esm';
export const PAGE_KINDS: PageKind[] = ['script', 'esm'];

/** The page's query knobs (server/demo/app.js), all shortened for tests by default. */
export interface InboxParams {
  user?: string;
  ttl?: number;
  grace?: number;
  probe?: number;
  backoff?: number;
  longpoll?: number;
  fallback?: number;
  connect?: number;
  transport?: 'auto' | 'websocket' | 'polling';
  /** More channels besides demo:<user>, comma-separated. */
  channels?: string;
  /** 0: one connection per tab (tabs of one user share one by default). */
  share?: 0 | 1;
}

export const FAST: InboxParams = { grace: 1000, backoff: 200, probe: 1500, longpoll: 1, connect: 3000 };

interface DemoState {
  state: string;
  transport: string | null;
  /** performance.now() in the page. */
  at: number;
  /** Date.now() in the page (comparable across pages). */
  wall: number;
}

/** What the user sees and what the SDK delivered, read from one page. */
export class Inbox {
  constructor(
    readonly page: Page,
    readonly user: string,
  ) {}

  get channel(): string {
    return `demo:${this.user}`;
  }

  state(): Promise<{ state: string; transport: string | null }> {
    return this.page.evaluate(() => {
      const c = (window as any).demo.client;
      return { state: c.state as string, transport: (c.transport ?? null) as string | null };
    });
  }

  /** Wait until the client reports `state` (and `transport`, when given), as the badge shows it. */
  async waitFor(state: string, transport?: 'websocket' | 'polling', timeout = 10_000): Promise<void> {
    await this.page.waitForFunction(
      ([s, t]) => {
        const c = (window as any).demo?.client;
        return !!c && c.state === s && (t === null || c.transport === t);
      },
      [state, transport ?? null] as const,
      { timeout, polling: 50 },
    );
    await expect(this.page.locator('#state')).toHaveAttribute('data-state', state);
    if (transport) await expect(this.page.locator('#transport')).toHaveAttribute('data-transport', transport);
  }

  /** Cursors of every `event` the SDK emitted, in order, duplicates included. */
  received(): Promise<string[]> {
    return this.page.evaluate(() => (window as any).demo.received.map((e: { cursor: string }) => e.cursor));
  }

  states(): Promise<DemoState[]> {
    return this.page.evaluate(() => (window as any).demo.states.slice());
  }

  /** Counters kept by the page: token fetches, listing loads, resets, errors. */
  counters(): Promise<{ tokenFetches: number; inboxLoads: number; resets: number; errors: { code?: string; closeCode?: number; status?: number }[] }> {
    return this.page.evaluate(() => {
      const d = (window as any).demo;
      return { tokenFetches: d.tokenFetches, inboxLoads: d.inboxLoads, resets: d.resets.length, errors: d.errors.slice() };
    });
  }

  /** The listing as shown, oldest first (the page shows newest on top). */
  async listed(): Promise<{ cursor: string; subject: string }[]> {
    const items = await this.page.locator('#mails li').evaluateAll((lis) =>
      lis.map((li) => ({ cursor: (li as HTMLElement).dataset['cursor']!, subject: (li as HTMLElement).dataset['subject']! })),
    );
    return items.reverse();
  }

  /**
   * Every one of `cursors` arrives, each exactly once and in publish order, both
   * in what the SDK emitted and in the listing the user sees; nothing anywhere
   * is delivered or shown twice.
   */
  async expectDelivered(cursors: string[], timeout = 10_000): Promise<void> {
    await expect
      .poll(async () => {
        const got = new Set(await this.received());
        return cursors.filter((c) => !got.has(c));
      }, { timeout, message: 'events not delivered' })
      .toEqual([]);
    const received = await this.received();
    expect(received.filter((c) => cursors.includes(c)), 'each event emitted once, in publish order').toEqual(cursors);
    expect(duplicates(received), 'no event emitted twice').toEqual([]);
    // The listing may lag the event by one render; wait for it, then check order and uniqueness.
    for (const c of cursors) await expect(this.page.locator(`#mails li[data-cursor="${c}"]`)).toHaveCount(1);
    const listed = (await this.listed()).map((m) => m.cursor);
    expect(listed.filter((c) => cursors.includes(c)), 'listed in publish order').toEqual(cursors);
    expect(duplicates(listed), 'no mail shown twice').toEqual([]);
  }
}

export function duplicates(xs: string[]): string[] {
  const seen = new Set<string>();
  const dup = new Set<string>();
  for (const x of xs) (seen.has(x) ? dup : seen).add(x);
  return [...dup];
}

type OpenInbox = (params?: InboxParams & { kind?: PageKind; page?: Page }) => Promise<Inbox>;

export const test = base.extend<{ tidings: TidingsServer; openInbox: OpenInbox }, { esmSite: StaticServer }>({
  esmSite: [
    async ({}, use) => {
      const site = await serveStatic(ESM_DIR);
      await use(site);
      await site.close();
    },
    { scope: 'worker' },
  ],

  tidings: async ({}, use, testInfo) => {
    const server = new TidingsServer();
    await server.start(0);
    await use(server);
    await server.stop('SIGKILL');
    if (testInfo.status !== testInfo.expectedStatus) {
      await testInfo.attach('server-output.txt', { body: server.output, contentType: 'text/plain' });
    }
  },

  openInbox: async ({ page, tidings, esmSite }, use, testInfo) => {
    const pages: Page[] = [];
    await use(async ({ kind = 'script', page: target = page, ...params } = {}) => {
      const user = params.user ?? 'alice';
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries({ ...FAST, ...params, user })) if (v !== undefined) q.set(k, String(v));
      if (kind === 'esm') q.set('server', tidings.base);
      const url = kind === 'esm' ? `${esmSite.base}/?${q}` : `${tidings.base}/?${q}`;
      const logs: string[] = [];
      target.on('console', (m) => logs.push(`[${m.type()}] ${m.text()}`));
      target.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
      pages.push(target);
      (target as Page & { __logs?: string[] }).__logs = logs;
      await target.goto(url);
      await target.waitForFunction(() => !!(window as any).demo?.client, undefined, { timeout: 5_000 });
      return new Inbox(target, user);
    });
    if (testInfo.status !== testInfo.expectedStatus) {
      for (const [i, p] of pages.entries()) {
        const logs = (p as Page & { __logs?: string[] }).__logs ?? [];
        await testInfo.attach(`page-${i}-console.txt`, { body: logs.join('\n'), contentType: 'text/plain' });
        if (!p.isClosed()) {
          // A crashed page never answers: give up after a moment.
          const d = await Promise.race([
            p.evaluate(() => JSON.stringify((window as any).demo, (k, v) => (k === 'client' ? undefined : v), 1)).catch(() => 'n/a'),
            new Promise<string>((r) => setTimeout(() => r('n/a (no answer)'), 3000)),
          ]);
          await testInfo.attach(`page-${i}-demo.json`, { body: d, contentType: 'application/json' });
        }
      }
    }
  },
});
