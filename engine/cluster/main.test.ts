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

  it('refuses unknown flags and bad numbers', () => {
    expect(() => parseClusterEngineArgs(['--nope'])).toThrow();
    expect(() => parseClusterEngineArgs(['--port', 'x'])).toThrow(/--port/);
  });
});
