import { defineConfig } from 'vitest/config';

// Every test has a timeout, so no caller can hang the suite.
export default defineConfig({
  test: {
    include: ['engine/**/*.test.ts', 'operator/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
