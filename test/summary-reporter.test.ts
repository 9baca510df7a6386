/**
 * The closing `N passed, N failed` line. Modules here are plain objects with the three members the
 * reporter reads (vitest builds real ones only inside a run).
 */

import { afterEach, describe, expect, it, vi } from 'vitest';
import type { SerializedError, TestModule } from 'vitest/node';
import SummaryReporter from './summary-reporter.ts';

type State = 'passed' | 'failed' | 'skipped';
const module = (state: State, tests: State[]) =>
  ({
    state: () => state,
    children: { allTests: () => tests.map((s) => ({ result: () => ({ state: s }) })) },
  }) as unknown as TestModule;

function closingLine(modules: TestModule[], unhandledErrors: SerializedError[] = []): string {
  const write = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
  new SummaryReporter().onTestRunEnd(modules, unhandledErrors);
  const line = String(write.mock.calls.at(-1)?.[0]).trim();
  write.mockRestore();
  return line;
}

afterEach(() => vi.restoreAllMocks());

describe('SummaryReporter', () => {
  it('counts tests', () => {
    expect(closingLine([module('failed', ['passed', 'failed', 'skipped'])])).toBe(
      '1 passed, 1 failed, 1 skipped',
    );
  });

  // The bug this pins: the fault suite's afterAll timed out, vitest failed the run, and the
  // closing line said "137 passed, 0 failed".
  it('counts a file whose hook failed (every test passed) as a failure', () => {
    expect(closingLine([module('failed', ['passed', 'passed']), module('passed', ['passed'])])).toBe(
      '3 passed, 1 failed',
    );
  });

  it('counts a file that did not load as a failure', () => {
    expect(closingLine([module('failed', [])])).toBe('0 passed, 1 failed');
  });

  // The bug this pins: the OOM killer killed the worker running a file; vitest reported an
  // unhandled error and failed the run, and the closing line said "1126 passed, 0 failed, 1 skipped".
  it('counts an unhandled error (a worker killed mid-file) as a failure', () => {
    const killed = { message: 'Worker exited unexpectedly with signal SIGKILL' } as SerializedError;
    expect(closingLine([module('skipped', ['skipped']), module('passed', ['passed'])], [killed])).toBe(
      '1 passed, 1 failed, 1 skipped',
    );
  });
});
