// End-to-end: the real companion server (a child process per test) and a real
// browser (Debian's chromium; Playwright never downloads one here).
import { defineConfig } from '@playwright/test';

process.env['PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD'] = '1';

export default defineConfig({
  testDir: './e2e',
  testMatch: '**/*.spec.ts',
  globalSetup: './e2e/global-setup.ts',
  // Two cores shared with others: two workers at most, and every timing in the
  // specs is shortened through the server's env and the page's query string.
  workers: process.env['CI'] ? 1 : 2,
  fullyParallel: true,
  timeout: 30_000,
  expect: { timeout: 8_000 },
  retries: 0,
  reporter: [['list']],
  outputDir: 'test-results',
  use: {
    browserName: 'chromium',
    headless: true,
    trace: 'retain-on-failure',
    screenshot: 'only-on-failure',
    launchOptions: {
      executablePath: process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium',
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    },
  },
});
