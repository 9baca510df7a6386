import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseOperatorArgs } from './cli.ts';

const failure = (argv: string[]): string | undefined => {
  try {
    parseOperatorArgs(argv);
  } catch (err) {
    return (err as Error).message;
  }
  return undefined;
};

describe('parseOperatorArgs', () => {
  it('maps the flags to options, defaults included', () => {
    expect(
      parseOperatorArgs(['--namespace', 'kw', '--workers', '4', '--lease-duration', '6s']),
    ).toMatchObject({
      namespace: 'kw',
      workers: 4,
      leaseDurationMs: 6000,
      metricsPort: 8080,
      resyncMs: 600_000,
      usageIntervalMs: 60_000,
      deletionDelayMs: 72 * 3_600_000,
    });
    expect(parseOperatorArgs(['-h'])).toBeUndefined();
  });

  // The findings this pins: `--workers abc` gave zero workers while the replica held the Lease, and
  // an absent or bad `--lease-duration` made leader election steal live Leases.
  it('refuses every bad number with one line naming the flag', () => {
    const cases: Array<[string[], RegExp]> = [
      [['--workers', 'abc'], /^--workers must be an integer from 1 to 1000, not "abc"$/],
      [['--workers', '0'], /^--workers/],
      [['--workers', '2.5'], /^--workers/],
      [['--metrics-port', '99999'], /^--metrics-port/],
      [['--lease-duration', '-1'], /^--lease-duration must be a duration/],
      [['--lease-duration', 'abc'], /^--lease-duration/],
      [['--lease-duration', '500ms'], /^--lease-duration must be between 1s and 1h/],
      [['--usage-interval', '0s'], /^--usage-interval/],
      [['--resync-interval', '10'], /^--resync-interval/],
      [['--deletion-delay', 'soon'], /^--deletion-delay/],
      [['--request-timeout', '12s'], /request timeout must be shorter than the renew deadline/],
      [['--lease-duration', '3s', '--request-timeout', '2s'], /request timeout/],
      [['--ca-configmap', 'Not_A_Name'], /^--ca-configmap must be a ConfigMap name/],
    ];
    for (const [argv, expected] of cases) {
      const message = failure(argv);
      expect(message, argv.join(' ')).toMatch(expected);
      expect(message).not.toContain('\n');
    }
    expect(failure(['--bogus'])).toMatch(/bogus/);
  });

  it('records actions on keys by default (stdout), and takes the audit flags', () => {
    expect(parseOperatorArgs([])?.audit).toMatchObject({ enabled: true, stdout: true });
    expect(parseOperatorArgs([])?.audit?.dir).toBeUndefined();
    expect(parseOperatorArgs(['--no-audit'])?.audit?.enabled).toBe(false);
    expect(
      parseOperatorArgs([
        '--audit-dir',
        '/var/audit',
        '--audit-checkpoint-records',
        '10',
        '--audit-checkpoint-interval',
        '2s',
        '--audit-segment-size',
        '1MiB',
      ])?.audit,
    ).toMatchObject({
      dir: '/var/audit',
      checkpointRecords: 10,
      checkpointIntervalMs: 2000,
      segmentBytes: 1024 * 1024,
      stdout: true,
    });
    for (const [argv, expected] of [
      [['--audit-checkpoint-records', '0'], /^--audit-checkpoint-records must be a positive integer/],
      [['--audit-checkpoint-interval', '10ms'], /^--audit-checkpoint-interval must be at least 100ms/],
      [['--audit-segment-size', 'big'], /^invalid size "big"/],
      // The operator serves no requests: there is nothing for --audit-required to refuse.
      [['--audit-required'], /audit-required/],
    ] as Array<[string[], RegExp]>) {
      expect(failure(argv), argv.join(' ')).toMatch(expected);
    }
  });
});

describe('keyward operator (the CLI)', () => {
  it('a bad flag is one line on stderr and exit 2, before touching any cluster', () => {
    const cli = join(import.meta.dirname, '..', 'engine', 'cli', 'main.ts');
    const r = spawnSync(process.execPath, [cli, 'operator', '--workers', 'abc'], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(r.status).toBe(2);
    expect(r.stderr.trim()).toBe('keyward operator: --workers must be an integer from 1 to 1000, not "abc"');
    const help = spawnSync(process.execPath, [cli, 'operator', '--help'], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^Usage: keyward operator/);
  });
});
