import { defineConfig } from 'vitest/config';

// The package checks (test/packages/): they pack what `npm run build` staged
// into packages/ and install the tarballs into temp apps, so they run after the
// build (scripts/test.mjs), apart from the unit suite, one file at a time.
export default defineConfig({
  test: {
    include: ['test/packages/**/*.test.ts'],
    environment: 'node',
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 300_000,
    maxWorkers: 1,
  },
});
