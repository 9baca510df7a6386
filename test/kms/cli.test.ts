/** `keyward kms-plugin` as a user types it: help, and one clear line for every bad flag. */
import { describe, expect, it } from 'vitest';
import { runCli } from './harness.ts';

describe('keyward kms-plugin flags', () => {
  it('--help describes every flag and exits 0', async () => {
    const r = await runCli(['kms-plugin', '--help']);
    expect(r.code).toBe(0);
    for (const flag of [
      '--listen',
      '--key',
      '--data-dir',
      '--addr',
      '--token-file',
      '--ca-file',
      '--timeout',
      '--state-dir',
    ])
      expect(r.out).toContain(flag);
    expect(r.out).toContain('docs/kms-plugin.md');
    const top = await runCli(['--help']);
    expect(top.out).toMatch(/kms-plugin \[options\]\s+serve the Kubernetes KMS v2 API/);
  });

  it.each([
    [
      ['--key', 'default/etcd-kek', '--data-dir', '/tmp'],
      /^keyward: --listen is required: unix:\/\/\/path\/to\/kms\.sock$/,
    ],
    [
      ['--listen', 'unix:///tmp/k.sock', '--data-dir', '/tmp'],
      /^keyward: --key is required: NAMESPACE\/NAME/,
    ],
    [
      ['--listen', 'tcp://127.0.0.1:1', '--key', 'default/etcd-kek', '--data-dir', '/tmp'],
      /^keyward: --listen must be unix:\/\/\/ABSOLUTE\/PATH/,
    ],
    [
      ['--listen', 'unix:///tmp/k.sock', '--key', 'etcd-kek', '--data-dir', '/tmp'],
      /^keyward: --key must be NAMESPACE\/NAME/,
    ],
    [
      ['--listen', 'unix:///tmp/k.sock', '--key', 'default/x', '--data-dir', '/tmp'],
      /^keyward: --key "default\/x": key name must be 3 to 15 characters long$/,
    ],
    [
      ['--listen', 'unix:///tmp/k.sock', '--key', 'default/etcd-kek'],
      /^keyward: choose a backend: --data-dir DIR .* or --addr URL/,
    ],
    [
      [
        '--listen',
        'unix:///tmp/k.sock',
        '--key',
        'default/etcd-kek',
        '--data-dir',
        '/tmp',
        '--addr',
        'https://x:1',
      ],
      /^keyward: use either --data-dir .* not both$/,
    ],
    [
      [
        '--listen',
        'unix:///tmp/k.sock',
        '--key',
        'default/etcd-kek',
        '--data-dir',
        '/tmp',
        '--timeout',
        'soon',
      ],
      /^keyward: --timeout must be a duration/,
    ],
    [
      ['--listen', 'unix:///tmp/k.sock', '--key', 'default/etcd-kek', '--addr', 'https://x:1'],
      /^keyward: a remote engine needs a token/,
    ],
    [
      [
        '--listen',
        'unix:///tmp/k.sock',
        '--key',
        'default/etcd-kek',
        '--addr',
        'http://10.0.0.1:7443',
        '--token-file',
        import.meta.filename,
      ],
      /^keyward: INVALID_ARGUMENT: plain http:\/\/ is allowed only on a loopback address/,
    ],
    [
      ['--listen', 'unix:///tmp/k.sock', '--key', 'default/etcd-kek', '--data-dir', '/tmp', '--bogus'],
      /^error: unknown option '--bogus'/,
    ],
  ])('refuses %j with one line and exit 1', async (args, message) => {
    const r = await runCli(['kms-plugin', ...args]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')[0]).toMatch(message);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});
