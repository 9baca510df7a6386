import { configDefaults, defineConfig } from 'vitest/config';
import KeywardSequencer from './test/node/sequencer.ts';

// Suites that talk to the test control plane (scripts/cluster). They share one apiserver, so
// they run one file at a time, each in namespaces of its own. The fault suite (test/fault) runs
// a control plane of its own, which it kills and hangs, but also one file at a time.
const clusterSuites = [
  'test/cluster/**/*.test.ts',
  'test/operator/**/*.test.ts',
  'test/chart/**/*.test.ts',
  // Starts a private control plane of its own (it restarts the apiserver), but needs the binaries.
  'test/kms/apiserver.test.ts',
  'test/fault/**/*.test.ts',
];
// Suites on the real node (`up --node`): pods, the Keyward image, the chart with --wait.
const nodeSuites = ['test/node/**/*.test.ts'];

// Every test has a timeout, so no caller can hang the suite.
export default defineConfig({
  test: {
    pool: 'forks',
    reporters: ['default', './test/summary-reporter.ts'],
    sequence: { sequencer: KeywardSequencer },
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['engine/**/*.test.ts', 'operator/**/*.unit.test.ts', 'test/**/*.test.ts'],
          exclude: [...configDefaults.exclude, ...clusterSuites, ...nodeSuites],
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
      {
        extends: true,
        test: {
          name: 'node',
          include: nodeSuites,
          // Needs root: installs the node's Debian packages, builds its binaries and the image,
          // and starts one node for the tier (skipped with a message without root). Its files
          // share that node and run in the order of test/node/sequencer.ts.
          globalSetup: ['test/node/global-setup.ts'],
          fileParallelism: false,
          testTimeout: 600_000,
          hookTimeout: 900_000,
        },
      },
    ],
  },
});
