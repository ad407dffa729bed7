import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
    pool: 'forks',
    testTimeout: 20_000,
    hookTimeout: 20_000,
    // Integration tests bind loopback ports and start processes: two cores, keep it calm.
    maxWorkers: 2,
  },
});
