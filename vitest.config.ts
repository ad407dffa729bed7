import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The package checks need the build: vitest.packages.config.ts runs them after it.
    exclude: [...configDefaults.exclude, 'test/packages/**'],
    environment: 'node',
    pool: 'forks',
    testTimeout: 20_000,
    hookTimeout: 20_000,
    // Integration tests bind loopback ports and start processes: two cores, keep it calm.
    maxWorkers: 2,
  },
});
