import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type KmsPluginFlags, parseListen, parseTimeout, resolveKmsPluginConfig } from './config.ts';

const dir = mkdtempSync(join(tmpdir(), 'keyward-kms-config-'));
const tokenFile = join(dir, 'token');
writeFileSync(tokenFile, 'token-0123456789abcdef\n');
const caFile = join(dir, 'ca.pem');
writeFileSync(caFile, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');

afterAll(() => rmSync(dir, { recursive: true, force: true }));

const base: KmsPluginFlags = { listen: 'unix:///run/keyward/kms.sock', key: 'default/etcd-kek' };

function errorOf(flags: KmsPluginFlags, env: Record<string, string> = {}): string {
  try {
    resolveKmsPluginConfig(flags, env);
  } catch (err) {
    const message = (err as Error).message;
    expect(message).not.toContain('\n');
    return message;
  }
  throw new Error('accepted');
}

describe('kms-plugin flags', () => {
  it('take a data dir, with the key_id history inside it by default', () => {
    expect(resolveKmsPluginConfig({ ...base, dataDir: '/var/lib/keyward' }, {})).toEqual({
      socketPath: '/run/keyward/kms.sock',
      namespace: 'default',
      name: 'etcd-kek',
      backend: { kind: 'data-dir', dataDir: '/var/lib/keyward' },
      timeoutMs: 3000,
      historyFile: '/var/lib/keyward/kms-plugin/kms.sock.key-ids.json',
    });
  });

  it('take a remote engine from flags or from KEYWARD_ADDR / KEYWARD_TOKEN / KEYWARD_CA_FILE', () => {
    const fromEnv = resolveKmsPluginConfig(base, {
      KEYWARD_ADDR: 'https://keyward.example:7443',
      KEYWARD_TOKEN: 'tok',
      KEYWARD_CA_FILE: caFile,
    });
    expect(fromEnv.backend).toMatchObject({
      kind: 'remote',
      url: 'https://keyward.example:7443',
      token: { token: 'tok' },
      caFile,
    });
    expect(fromEnv.historyFile).toBeUndefined();
    const fromFlags = resolveKmsPluginConfig(
      { ...base, addr: 'https://k:1', tokenFile, stateDir: '/var/lib/kms', timeout: '500ms' },
      {},
    );
    expect(fromFlags).toMatchObject({
      backend: { kind: 'remote', url: 'https://k:1', token: { file: tokenFile } },
      historyFile: '/var/lib/kms/kms.sock.key-ids.json',
      timeoutMs: 500,
    });
  });

  it('refuse every mistake with one line naming the flag', () => {
    expect(errorOf({ key: 'default/k1k' })).toMatch(/--listen is required/);
    expect(errorOf({ ...base, listen: '/run/kms.sock' })).toMatch(/--listen must be unix:\/\/\//);
    expect(errorOf({ ...base, listen: 'unix://run/kms.sock' })).toMatch(/absolute socket path/);
    expect(errorOf({ ...base, listen: 'unix:///run/../kms.sock' })).toMatch(/normalized/);
    expect(errorOf({ ...base, listen: `unix:///${'x'.repeat(120)}` })).toMatch(/at most 107/);
    expect(errorOf({ listen: base.listen, dataDir: '/d' })).toMatch(/--key is required/);
    expect(errorOf({ ...base, key: 'etcd-kek', dataDir: '/d' })).toMatch(/--key must be NAMESPACE\/NAME/);
    expect(errorOf({ ...base, key: 'Default/etcd-kek', dataDir: '/d' })).toMatch(
      /--key "Default\/etcd-kek": namespace/,
    );
    expect(errorOf({ ...base, key: 'default/9kek', dataDir: '/d' })).toMatch(
      /--key "default\/9kek": key name must start/,
    );
    expect(errorOf(base)).toMatch(/choose a backend/);
    expect(errorOf({ ...base, dataDir: '/d', addr: 'https://k:1' })).toMatch(/not both/);
    expect(errorOf({ ...base, dataDir: '/d', tokenFile })).toMatch(/apply to a remote engine/);
    expect(errorOf({ ...base, addr: 'https://k:1' })).toMatch(/needs a token/);
    expect(errorOf({ ...base, addr: 'https://k:1', tokenFile: join(dir, 'missing') })).toMatch(
      /cannot read the token file .*ENOENT/,
    );
    expect(
      errorOf({ ...base, addr: 'https://k:1', caFile: join(dir, 'missing') }, { KEYWARD_TOKEN: 't' }),
    ).toMatch(/cannot read the CA file/);
    expect(errorOf({ ...base, addr: 'https://k:1', caFile: tokenFile }, { KEYWARD_TOKEN: 't' })).toMatch(
      /holds no PEM certificate/,
    );
    expect(errorOf({ ...base, dataDir: '/d', timeout: '5' })).toMatch(/--timeout must be a duration/);
    expect(errorOf({ ...base, dataDir: '/d', timeout: '2m' })).toMatch(/--timeout must be a duration/);
    expect(errorOf({ ...base, dataDir: '/d', timeout: '61s' })).toMatch(/between 100ms and 60s/);
  });

  it('parse the apiserver endpoint form and durations', () => {
    expect(parseListen('unix:///var/run/kmsplugin/socket.sock')).toBe('/var/run/kmsplugin/socket.sock');
    expect(parseTimeout('1.5s')).toBe(1500);
    expect(parseTimeout('100ms')).toBe(100);
  });
});
