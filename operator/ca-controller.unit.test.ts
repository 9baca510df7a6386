import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadOrCreateAutoCert } from '../engine/http/tls.ts';
import { caFromConfigMap } from './ca-controller.ts';

describe('caFromConfigMap', () => {
  it('takes a PEM certificate (or bundle) from ca.crt, and nothing else', async () => {
    const { cert } = await loadOrCreateAutoCert(await mkdtemp(join(tmpdir(), 'kw-ca-unit-')), 'x.test');
    expect(caFromConfigMap({ data: { 'ca.crt': cert } })).toBe(cert);
    expect(caFromConfigMap({ data: { 'ca.crt': `${cert}${cert}` } })).toBe(`${cert}${cert}`);
    // A missing source, another key, garbage or a private key publish nothing (and remove nothing).
    expect(caFromConfigMap(undefined)).toBeUndefined();
    expect(caFromConfigMap({ data: { 'tls.crt': cert } })).toBeUndefined();
    expect(caFromConfigMap({ data: { 'ca.crt': 'not a certificate' } })).toBeUndefined();
    expect(
      caFromConfigMap({
        data: { 'ca.crt': '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n' },
      }),
    ).toBeUndefined();
  });
});
