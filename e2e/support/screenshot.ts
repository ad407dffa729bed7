// Regenerates docs/demo.png (the README's picture of the demo page):
//   npx tsx e2e/support/screenshot.ts   (after npm run build)
import { chromium } from '@playwright/test';
import { TidingsServer } from './server.js';

const server = new TidingsServer();
await server.start(0);
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
try {
  const page = await browser.newPage({ viewport: { width: 1180, height: 640 }, deviceScaleFactor: 1 });
  await page.goto(`${server.base}/?user=alice`);
  await page.waitForFunction(() => (window as any).demo?.client?.state === 'open');
  const mails = [
    ['billing@example.com', 'Your invoice for November'],
    ['maria@example.com', 'Re: slides for Thursday'],
    ['ci@example.com', 'Build #482 passed'],
    ['boss@example.com', 'Lunch?'],
  ];
  for (const [from, subject] of mails) await server.publish('demo:alice', { from, subject, at: Date.now() });
  await page.getByRole('button', { name: 'Send me a test mail' }).click();
  await page.waitForFunction(() => document.querySelectorAll('#mails li').length === 5);
  await page.waitForTimeout(800); // let the arrival highlight fade
  await page.screenshot({ path: 'docs/demo.png' });
} finally {
  await browser.close();
  await server.stop('SIGKILL');
}
