import { defineConfig } from 'vitest/config';

// The SDK behaviour suites again, against the shipped dist/tidings.min.js
// (test/sdk/helpers.ts reads TIDINGS_SDK): what terser does to the code is
// tested too. Needs the build, so scripts/test.mjs runs it after `npm run build`.
export default defineConfig({
  test: {
    include: ['test/sdk/{scenarios,defects,api,fallback,poll}.test.ts'],
    env: { TIDINGS_SDK: 'dist' },
    environment: 'node',
    pool: 'forks',
    testTimeout: 20_000,
    hookTimeout: 20_000,
    maxWorkers: 2,
  },
});
