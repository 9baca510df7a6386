import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { KeywardError } from '../errors.ts';
import { parseClusterEngineArgs } from './cli.ts';
import { runClusterEngine } from './main.ts';

describe('runClusterEngine guards', () => {
  it('refuses --insecure-no-auth off loopback before touching anything', async () => {
    for (const host of ['0.0.0.0', '10.1.2.3', '::']) {
      const err = await runClusterEngine({ host, insecureNoAuth: true }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(KeywardError);
      expect((err as KeywardError).code).toBe('INVALID_ARGUMENT');
      expect((err as KeywardError).message).toMatch(/loopback/);
    }
  });

  it('refuses --tls off off loopback', async () => {
    const err = await runClusterEngine({ host: '0.0.0.0', tls: { mode: 'off' } }).catch((e: unknown) => e);
    expect((err as KeywardError).code).toBe('INVALID_ARGUMENT');
  });
});

describe('parseClusterEngineArgs', () => {
  it('maps the flags to options', () => {
    expect(
      parseClusterEngineArgs([
        '--kubeconfig',
        '/k',
        '--namespace',
        'kw',
        '--port',
        '8443',
        '--host',
        '127.0.0.1',
        '--tls',
        'off',
        '--region',
        'eu-1',
        '--insecure-no-auth',
        '--threads',
        '2',
      ]),
    ).toEqual({
      kubeconfig: '/k',
      namespace: 'kw',
      port: 8443,
      host: '127.0.0.1',
      tls: { mode: 'off' },
      region: 'eu-1',
      insecureNoAuth: true,
      threads: 2,
    });
  });

  it('refuses unknown flags and bad numbers with one line naming the flag', () => {
    expect(() => parseClusterEngineArgs(['--nope'])).toThrow();
    for (const [flag, value] of [
      ['--port', 'x'],
      ['--port', '70000'],
      ['--port', '-1'],
      ['--threads', 'abc'],
      ['--threads', '0'],
      ['--threads', '1.5'],
      ['--usage-report-ms', '-5'],
      ['--request-timeout', '-1'],
      ['--request-timeout', '5'],
    ] as const) {
      const err = (() => {
        try {
          parseClusterEngineArgs([flag, value]);
        } catch (e) {
          return e as Error;
        }
        return undefined;
      })();
      expect(err?.message, `${flag} ${value}`).toMatch(new RegExp(`^${flag}`));
      expect(err?.message).not.toContain('\n');
    }
    expect(parseClusterEngineArgs(['--help'])).toBeUndefined();
  });
});

describe('keyward engine (the CLI)', () => {
  const cli = join(import.meta.dirname, '..', 'cli', 'main.ts');
  const run = (...args: string[]) =>
    spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 20_000 });

  // The finding this pins: `keyward engine --help` failed with "Unknown option '--help'".
  it('--help prints the usage and exits 0', () => {
    const r = run('engine', '--help');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^Usage: keyward engine/);
    expect(r.stdout).toContain('--request-timeout');
  });

  it('a bad number is one line on stderr and exit 2', () => {
    const r = run('engine', '--threads', 'abc');
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/--threads must be an integer from 1 to 256, not "abc"/);
  });
});
