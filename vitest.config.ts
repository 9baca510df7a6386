import { configDefaults, defineConfig } from 'vitest/config';

// Suites that talk to the test control plane (scripts/cluster). They share one apiserver, so
// they run one file at a time, each in namespaces of its own.
const clusterSuites = [
  'test/cluster/**/*.test.ts',
  'test/operator/**/*.test.ts',
  'test/chart/**/*.test.ts',
  // Starts a private control plane of its own (it restarts the apiserver), but needs the binaries.
  'test/kms/apiserver.test.ts',
];

// Every test has a timeout, so no caller can hang the suite.
export default defineConfig({
  test: {
    pool: 'forks',
    reporters: ['default', './test/summary-reporter.ts'],
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['engine/**/*.test.ts', 'operator/**/*.unit.test.ts', 'test/**/*.test.ts'],
          exclude: [...configDefaults.exclude, ...clusterSuites],
          testTimeout: 30_000,
          hookTimeout: 120_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'cluster',
          include: clusterSuites,
          // Builds the binaries when missing (a cold build takes a while) and starts the
          // cluster; runs only when a selected file belongs to this project.
          globalSetup: ['test/cluster/global-setup.ts'],
          fileParallelism: false,
          testTimeout: 120_000,
          hookTimeout: 300_000,
        },
      },
    ],
  },
});
